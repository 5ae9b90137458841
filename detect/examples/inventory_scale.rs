//! Inventory benchmark: `inventory_scale generate DIR [HOSTS]` writes a large
//! inventory in INI, YAML and JSON (see `tests/support/large_inventory.rs`);
//! `inventory_scale load FILE` parses and resolves one and prints the host
//! count and the seconds it took. `scripts/bench-inventory.sh` runs both
//! under `/usr/bin/time -v` for the peak RSS.

#[path = "../tests/support/large_inventory.rs"]
#[expect(dead_code, reason = "the expected triples are for the scale test")]
mod large_inventory;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use rustle_detect::ParsedInventory;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["generate", dir, rest @ ..] => {
            let hosts = match rest.first().map(|n| n.parse::<usize>()) {
                None => 100_000,
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    eprintln!("error: HOSTS must be a number: {e}");
                    return ExitCode::from(2);
                }
            };
            match large_inventory::write(Path::new(dir), hosts) {
                Ok(written) => {
                    for (format, file) in written.files {
                        println!("{format} {}", file.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: failed to write the inventories under {dir}: {e}");
                    ExitCode::from(1)
                }
            }
        }
        ["load", file] => {
            let started = Instant::now();
            match ParsedInventory::load(Path::new(file)) {
                Ok(inventory) => {
                    let seconds = started.elapsed().as_secs_f64();
                    println!("{} hosts {} groups {seconds:.3} s", inventory.hosts.len(), inventory.groups.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => {
            eprintln!("usage: inventory_scale generate DIR [HOSTS] | inventory_scale load FILE");
            ExitCode::from(2)
        }
    }
}
