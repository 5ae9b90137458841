//! rustle-hello: prints what it was built for, using tokio worker threads,
//! serde and a C function, so running it checks the whole toolchain plan.

use serde::Serialize;

extern "C" {
    fn rustle_fnv1a(data: *const u8, len: usize) -> u32;
}

#[derive(Serialize)]
struct Report {
    arch: &'static str,
    os: &'static str,
    pointer_width: usize,
    big_endian: bool,
    fnv1a: String,
    workers: usize,
}

fn fnv1a(data: &[u8]) -> u32 {
    // SAFETY: the C function reads exactly `len` bytes from `data`.
    unsafe { rustle_fnv1a(data.as_ptr(), data.len()) }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let workers = runtime.block_on(async {
        let tasks: Vec<_> = (0..4).map(|i| tokio::spawn(async move { i })).collect();
        let mut done = 0;
        for task in tasks {
            done += usize::from(task.await.is_ok());
        }
        done
    });
    let report = Report {
        arch: std::env::consts::ARCH,
        os: std::env::consts::OS,
        pointer_width: std::mem::size_of::<usize>() * 8,
        big_endian: cfg!(target_endian = "big"),
        fnv1a: format!("{:08x}", fnv1a(b"rustle")),
        workers,
    };
    println!("rustle-hello {}", serde_json::to_string(&report).expect("json"));
}
