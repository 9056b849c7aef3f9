//! `bitnet info`: the GPU adapter — name, backend, device type, limits and features.

use crate::error::CliResult;
use crate::output::print_json;

pub fn run(json: bool) -> CliResult {
    let gpu = super::gpu()?;
    let r = gpu.report();
    if json {
        return print_json(&r);
    }
    println!("adapter:     {}", r.name);
    println!("backend:     {}", r.backend);
    println!("device type: {}", r.device_type);
    println!("driver:      {} {}", r.driver, r.driver_info);
    println!("limits:");
    for (k, v) in &r.limits {
        println!("  {k:<40} {v}");
    }
    println!(
        "features:    {}",
        if r.features.is_empty() {
            "(none)".to_string()
        } else {
            r.features.join(", ")
        }
    );
    Ok(())
}
