//! TEMPORARY probe (to be deleted): compile the real Cloudflare route list.
use super::*;
#[test]
fn probe_cf_routes() {
    let text = std::fs::read_to_string("/tmp/pg/cf.yaml").unwrap();
    let mut keys = KeyInterner::new();
    match RouteTable::compile(&[SourceFile::from_text("cf.yaml", text)], &mut keys) {
        Ok(table) => {
            println!("OK {} routes", table.len());
            let paths: Vec<String> = table
                .routes()
                .iter()
                .map(|r| r.pattern.replace("{", "").replace("}", "").replace("*", ""))
                .collect();
            let start = std::time::Instant::now();
            let mut hits = 0;
            for _ in 0..100 {
                for p in &paths {
                    if table.lookup("GET", p).is_some() {
                        hits += 1;
                    }
                }
            }
            println!(
                "{} lookups, {} hits, {:?} per lookup",
                paths.len() * 100,
                hits,
                start.elapsed() / (paths.len() as u32 * 100)
            );
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            println!("{} errors", errors.len());
        }
    }
}
