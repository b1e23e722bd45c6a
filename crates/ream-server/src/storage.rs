//! Outputs in the output store (ream-outputs): a split run's parts under its output's
//! name, and retention, which removes only the outputs the control store records as
//! ream's.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ream_control::{Control, OutputRecord};
use ream_outputs::Outputs;

/// A split run's parts, in the store under the output's name (a directory).
pub struct StoreParts {
    outputs: Arc<Outputs>,
    prefix: String,
}

impl StoreParts {
    pub fn new(outputs: Arc<Outputs>, name: &str) -> StoreParts {
        StoreParts { outputs, prefix: format!("{name}/") }
    }
}

/// One part being written: visible when committed, aborted when dropped.
struct Part(ream_outputs::Upload);

impl io::Write for Part {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl ream_engine::PendingPart for Part {
    fn commit(self: Box<Self>) -> io::Result<()> {
        self.0.commit().map(|_| ())
    }
}

impl ream_engine::PartStore for StoreParts {
    fn create(&mut self, path: &str) -> io::Result<Box<dyn ream_engine::PendingPart>> {
        let upload =
            self.outputs.begin(&format!("{}{path}", self.prefix), Box::new(|_| {})).map_err(io::Error::other)?;
        Ok(Box::new(Part(upload)))
    }

    fn remove(&mut self, path: &str) {
        let _ = self.outputs.remove(&format!("{}{path}", self.prefix));
    }
}

/// How long and how much finished outputs are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// Remove the recorded outputs older than the age limit, then the oldest until the rest
/// fit the byte limit. Returns the names removed. Nothing the control store does not
/// record is touched.
pub fn apply_retention(
    control: &Control,
    outputs: &Outputs,
    retention: Retention,
) -> Result<Vec<String>, ream_control::ControlError> {
    let now = ream_control::now_ms();
    let recorded: Vec<OutputRecord> = control.outputs()?;
    let mut total: u64 = recorded.iter().map(|o| o.bytes).sum();
    let mut removed = Vec::new();
    for o in recorded {
        let age = Duration::from_millis(now.saturating_sub(o.created_ms).max(0) as u64);
        if age > retention.max_age || total > retention.max_bytes {
            if let Err(e) = outputs.remove(&o.name) {
                tracing::warn!("retention: {e}");
                continue;
            }
            control.forget_output(&o.name)?;
            total -= o.bytes;
            removed.push(o.name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ream_engine::PartStore;
    use std::io::Write;

    fn record(control: &Control, name: &str, bytes: u64, age: Duration) {
        let o = OutputRecord {
            name: name.into(),
            run_id: name.into(),
            report: "r".into(),
            bytes,
            created_ms: ream_control::now_ms() - age.as_millis() as i64,
        };
        control.record_output(&o).unwrap();
    }

    #[test]
    fn retention_removes_recorded_outputs_whole_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::open(None, dir.path()).unwrap();
        let out_dir = dir.path().join("outputs");
        let outputs = Arc::new(Outputs::open(&format!("file://{}", out_dir.display()), None).unwrap());
        let mut parts = StoreParts::new(outputs.clone(), "r1.parts");
        for (path, data) in
            [("part/k=a/part-00001.csv", "aaaa"), ("part/k=b/part-00001.csv", "bb"), ("manifest.json", "{}")]
        {
            let mut p = parts.create(path).unwrap();
            p.write_all(data.as_bytes()).unwrap();
            p.commit().unwrap();
        }
        let mut single = outputs.begin("r2.csv", Box::new(|_| {})).unwrap();
        single.write_all(b"0123456789").unwrap();
        single.commit().unwrap();
        // Someone else's file in the same directory.
        std::fs::write(out_dir.join("notes.txt"), "keep me").unwrap();
        record(&control, "r1.parts", 8, Duration::from_secs(7200));
        record(&control, "r2.csv", 10, Duration::from_secs(60));

        let keep = Retention { max_age: Duration::from_secs(3600 * 3), max_bytes: 18 };
        assert_eq!(apply_retention(&control, &outputs, keep).unwrap(), Vec::<String>::new());
        let hour = Retention { max_age: Duration::from_secs(3600), max_bytes: 18 };
        assert_eq!(apply_retention(&control, &outputs, hour).unwrap(), ["r1.parts"]);
        let bytes = Retention { max_age: Duration::from_secs(3600), max_bytes: 5 };
        assert_eq!(apply_retention(&control, &outputs, bytes).unwrap(), ["r2.csv"]);
        let left: Vec<String> = outputs.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(left, ["notes.txt"]);
        assert!(control.outputs().unwrap().is_empty());
    }
}
