//! The loss log: one CSV row per step (`step,loss,lr,grad_norm,seconds,loss_q1..loss_q4`, the
//! last four the loss per quarter of the timestep range, empty when a batch had no image there),
//! appended as training goes so an interrupted run keeps its history; a resumed run first drops
//! rows past its checkpoint. Logs from before the quarter columns are read too.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

pub const LOG_FILE: &str = "loss.csv";
const HEADER: &str = "step,loss,lr,grad_norm,seconds,loss_q1,loss_q2,loss_q3,loss_q4";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRow {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Wall-clock seconds since the run (or its first part) started.
    pub seconds: f64,
    /// Unweighted loss per quarter of the timesteps, from the cleanest (q1) to the noisiest.
    pub quarters: [Option<f64>; 4],
}

pub struct LossLog {
    path: PathBuf,
    file: std::fs::File,
}

impl LossLog {
    /// Starts a new log, or continues one keeping only rows up to `keep_through` steps.
    pub fn open(path: &Path, keep_through: Option<u64>) -> anyhow::Result<LossLog> {
        let mut text = format!("{HEADER}\n");
        if let Some(last) = keep_through {
            if path.exists() {
                for row in read(path)? {
                    if row.step <= last {
                        text.push_str(&format_row(&row));
                    }
                }
            }
        }
        crate::base::fsutil::write_file(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot append to {}", path.display()))?;
        Ok(LossLog { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, row: &LogRow) -> anyhow::Result<()> {
        self.file
            .write_all(format_row(row).as_bytes())
            .with_context(|| format!("cannot append to {}", self.path.display()))
    }
}

fn format_row(r: &LogRow) -> String {
    let q = r.quarters.map(|q| q.map_or(String::new(), |v| v.to_string())).join(",");
    format!("{},{},{:e},{},{:.3},{q}\n", r.step, r.loss, r.lr, r.grad_norm, r.seconds)
}

/// Reads a loss log back (for plots and resumed runs).
pub fn read(path: &Path) -> anyhow::Result<Vec<LogRow>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || anyhow::anyhow!("{}:{}: malformed row {line:?}", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 && f.len() != 9 {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
        let mut quarters = [None; 4];
        for (q, text) in quarters.iter_mut().zip(f.iter().skip(5)) {
            *q = if text.is_empty() { None } else { Some(num(text)?) };
        }
        rows.push(LogRow {
            step: f[0].parse().map_err(|_| bad())?,
            loss: num(f[1])?,
            lr: num(f[2])?,
            grad_norm: num(f[3])?,
            seconds: num(f[4])?,
            quarters,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_resume_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("loss.csv");
        let row = |s| LogRow {
            step: s,
            loss: 0.1 * s as f64,
            lr: 1e-3,
            grad_norm: 0.5,
            seconds: 1.25,
            quarters: [Some(0.5), None, Some(0.25 * s as f64), Some(1.0)],
        };
        let mut log = LossLog::open(&p, None).unwrap();
        for s in 1..=5 {
            log.append(&row(s)).unwrap();
        }
        drop(log);
        assert_eq!(read(&p).unwrap(), (1..=5).map(row).collect::<Vec<_>>());
        let mut log = LossLog::open(&p, Some(3)).unwrap();
        log.append(&row(4)).unwrap();
        drop(log);
        assert_eq!(read(&p).unwrap().iter().map(|r| r.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);

        // A log written before the quarter columns existed still reads (and resumes).
        std::fs::write(&p, "step,loss,lr,grad_norm,seconds\n1,0.5,1e-3,0.2,0.75\n").unwrap();
        let old = read(&p).unwrap();
        assert_eq!((old[0].loss, old[0].quarters), (0.5, [None; 4]));
        drop(LossLog::open(&p, Some(1)).unwrap());
        assert_eq!(read(&p).unwrap(), old);
    }
}
