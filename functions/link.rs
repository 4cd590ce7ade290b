//! The build script every function shares (`build = "../link.rs"`): links the function as a
//! position-dependent executable (`-no-pie`) on Linux, as Go links its Lambda functions by
//! default.
//!
//! A position-independent executable is relocated by the dynamic loader at every start: about
//! 50,000 relocations for a function, with the pages they touch copied, 0.4 ms of a 1.9 ms
//! cold-start init on the benchmark machine (see the README's Cold start). Linked at a fixed
//! address there are none (169 left, for the C library's symbols), and the binary is 1.2 MB
//! smaller. What it costs: the executable's own code and data sit at a fixed address; the
//! stack, heap, memory maps and shared libraries stay randomised. Build with `BACKSTOP_PIE=1` to
//! link position-independent instead.

fn main() {
    println!("cargo:rerun-if-env-changed=BACKSTOP_PIE");
    let cfg = |name: &str| std::env::var(name).unwrap_or_default();
    // Dynamically linked glibc targets only (Lambda's): a static build (musl, crt-static) links
    // static-PIE its own way, and other systems' linkers do not take the flag.
    let glibc = cfg("CARGO_CFG_TARGET_OS") == "linux" && cfg("CARGO_CFG_TARGET_ENV") == "gnu";
    let crt_static = cfg("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    let pie = std::env::var("BACKSTOP_PIE").is_ok_and(|v| !v.is_empty() && v != "0");
    if glibc && !crt_static && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
