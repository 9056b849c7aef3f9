//! `bitnet selftest`: every GPU kernel on this adapter against its CPU reference.

use crate::error::{CliError, CliResult};
use crate::output::print_json;

pub fn run(json: bool) -> CliResult {
    let gpu = super::gpu()?;
    let checks = pollster::block_on(bitnet_gpu::selftest::run_all(&gpu));
    let failed = checks.iter().filter(|c| !c.passed).count();
    if json {
        print_json(&serde_json::json!({
            "adapter": gpu.info.name,
            "backend": format!("{:?}", gpu.info.backend),
            "passed": failed == 0,
            "checks": checks,
        }))?;
    } else {
        println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
        for c in &checks {
            println!(
                "{:<64} max abs {:>9.2e}  max rel {:>9.2e}  {}",
                c.kernel,
                c.max_abs,
                c.max_rel,
                if c.passed {
                    "pass".to_string()
                } else {
                    format!("FAIL: {}", c.detail)
                }
            );
        }
        println!("{} passed, {} failed", checks.len() - failed, failed);
    }
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {} kernel checks failed on {}",
            checks.len(),
            gpu.info.name
        )));
    }
    Ok(())
}
