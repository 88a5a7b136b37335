//! Compiles the embedded demo policy (`demo/demo-policy.yaml`) into a decision table with the
//! compiler library, so the router binary carries a table it can serve with no flags.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let src = "demo/demo-policy.yaml";
    println!("cargo::rerun-if-changed={src}");
    let text = std::fs::read_to_string(src)?;
    let (sources, out) = policyc::compile_str(src, &text)?;
    let failed = out.has_errors();
    let Some(compiled) = out.compiled.filter(|_| !failed) else {
        let rendered = policyc::diag::render_human(&sources, &out.diagnostics);
        return Err(format!("demo policy does not compile:\n{rendered}").into());
    };
    // The uring-coop shim's ring counters (router/uring-coop/src/syscall.c), found at start
    // with `dlsym`: exported from the binary when the shim is linked; absent (and the
    // router says so) when glommio was built with its stock liburing.
    println!("cargo::rustc-link-arg-bins=-Wl,--export-dynamic-symbol=switchyard_uring_coop_rings");
    let dest = PathBuf::from(std::env::var("OUT_DIR")?).join("demo.swt");
    std::fs::write(dest, compiled.table)?;
    Ok(())
}
