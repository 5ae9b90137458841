//! Compiles the template's C code with the target's C compiler (`CC_<target>`).
fn main() {
    println!("cargo:rerun-if-changed=src/fnv1a.c");
    cc::Build::new().file("src/fnv1a.c").compile("fnv1a");
}
