//! The logrotate container logger (Mesos' `LogrotateContainerLogger`): an
//! executor's stdout and stderr are pipes, each read by a `corral logger`
//! process (Mesos' `mesos-logrotate-logger`) that writes `<sandbox>/stdout`
//! (or `stderr`) and rotates it by size: `stdout` -> `stdout.1` ->
//! `stdout.2` ..., keeping at most N rotated files.
//!
//! This module holds the settings (the agent's `--logrotate_*` flags and a
//! task's `CONTAINER_LOGGER_*` overrides), the rotating writer the logger
//! process runs ([`RotatingWriter`], [`run_logger`]) and the spawning of a
//! logger ([`spawn_logger`]). The logger runs in its own session with `/` as
//! its working directory: it is not in the executor's process group or
//! cgroups, survives an agent restart, and exits when the last writer of its
//! pipe is gone (EOF).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Default `--logrotate_max_stdout_size` / `--logrotate_max_stderr_size`.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Rotated files kept when the options do not say (`rotate 9`).
pub const DEFAULT_KEEP: u32 = 9;
/// Most rotated files `rotate N` may keep.
pub const MAX_KEEP: u32 = 1000;

/// Task environment variables that override the agent's settings, as in
/// Mesos.
pub const ENV_MAX_STDOUT_SIZE: &str = "CONTAINER_LOGGER_MAX_STDOUT_SIZE";
/// See [`ENV_MAX_STDOUT_SIZE`].
pub const ENV_MAX_STDERR_SIZE: &str = "CONTAINER_LOGGER_MAX_STDERR_SIZE";
/// See [`ENV_MAX_STDOUT_SIZE`].
pub const ENV_STDOUT_OPTIONS: &str = "CONTAINER_LOGGER_LOGROTATE_STDOUT_OPTIONS";
/// See [`ENV_MAX_STDOUT_SIZE`].
pub const ENV_STDERR_OPTIONS: &str = "CONTAINER_LOGGER_LOGROTATE_STDERR_OPTIONS";

/// logrotate-style options, of which `rotate N` (the number of rotated
/// files kept) is the one understood; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogrotateOptions {
    /// The text as given.
    pub text: String,
    /// `rotate N`, if given.
    pub rotate: Option<u32>,
}

impl LogrotateOptions {
    /// Parses options text: directives separated by whitespace, newlines or
    /// `;`, `#` starting a comment up to the end of the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rotate = None;
        let mut words = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ';'))
            .filter(|w| !w.is_empty());
        while let Some(word) = words.next() {
            match word {
                "rotate" => {
                    let n = words
                        .next()
                        .ok_or_else(|| "'rotate' needs a count, as in 'rotate 9'".to_string())?;
                    let n: u32 = n.parse().ok().filter(|n| *n <= MAX_KEEP).ok_or_else(|| {
                        format!("'rotate {n}': the count must be a number from 0 to {MAX_KEEP}")
                    })?;
                    rotate = Some(n);
                }
                other => {
                    return Err(format!(
                        "unknown logrotate option '{other}'; only 'rotate N' is supported (sizes \
                         come from the max size settings)"
                    ))
                }
            }
        }
        Ok(Self {
            text: text.to_string(),
            rotate,
        })
    }
}

/// How one stream (stdout or stderr) is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Largest size of the current file, in bytes (at least 1).
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            keep: DEFAULT_KEEP,
        }
    }
}

/// The agent's `--container_logger=logrotate` settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogrotateSettings {
    /// stdout.
    pub stdout: StreamSettings,
    /// stderr.
    pub stderr: StreamSettings,
}

impl LogrotateSettings {
    /// The settings for one container: the agent's, with the task's
    /// `CONTAINER_LOGGER_*` variables applied. A bad value is ignored with a
    /// warning (the agent's value stays); `context` names the container in
    /// that warning.
    pub fn with_overrides(&self, env: &[(String, String)], context: &str) -> Self {
        let mut out = *self;
        for (name, value) in env {
            let (stream, is_size) = match name.as_str() {
                ENV_MAX_STDOUT_SIZE => (&mut out.stdout, true),
                ENV_MAX_STDERR_SIZE => (&mut out.stderr, true),
                ENV_STDOUT_OPTIONS => (&mut out.stdout, false),
                ENV_STDERR_OPTIONS => (&mut out.stderr, false),
                _ => continue,
            };
            let applied = if is_size {
                parse_max_size(value).map(|n| stream.max_size = n)
            } else {
                LogrotateOptions::parse(value).map(|o| {
                    if let Some(n) = o.rotate {
                        stream.keep = n;
                    }
                })
            };
            if let Err(error) = applied {
                tracing::warn!(
                    container = context,
                    variable = %name,
                    value = %value,
                    error = %error,
                    "ignoring a bad container logger override, using the agent's setting"
                );
            }
        }
        out
    }
}

/// A log file's maximum size: a Mesos byte size (`10MB`, `512KB`,
/// `2097152B`) above zero.
pub fn parse_max_size(s: &str) -> Result<u64, String> {
    let n = crate::flags::parse_bytes(s)?;
    if n == 0 {
        return Err(format!("'{s}' must be larger than zero"));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// The rotating writer
// ---------------------------------------------------------------------------

/// Writes a log file and rotates it by size.
///
/// Data is written as it comes (nothing is held back, so a reader of the
/// sandbox sees partial lines at once). Before a write that would take the
/// file past `max_size` the file is rotated: `name.N` (N = keep) is
/// deleted, `name.i` becomes `name.i+1`, `name` becomes `name.1`, and a new
/// `name` is started; with keep = 0 the file is just started again. A line
/// is never split across two files when it fits in one: the part of an
/// unfinished line already written is moved to the new file. A line longer
/// than `max_size` is split into pieces of `max_size`.
#[derive(Debug)]
pub struct RotatingWriter {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    /// Bytes in the current file.
    written: u64,
    /// Bytes of the current file's unfinished last line.
    open_line: u64,
}

impl RotatingWriter {
    /// Opens (appending to) or creates `path`.
    pub fn open(path: impl Into<PathBuf>, max_size: u64, keep: u32) -> io::Result<Self> {
        let mut w = Self {
            path: path.into(),
            max_size: max_size.max(1),
            keep,
            file: None,
            written: 0,
            open_line: 0,
        };
        w.reopen()?;
        Ok(w)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        self.written = file.metadata()?.len();
        self.open_line = 0;
        self.file = Some(file);
        Ok(())
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>.<i>`.
    fn rotated(&self, i: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    }

    /// Writes `data`, rotating as needed.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            // A previous write failed: start again from what is on disk.
            self.reopen()?;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.max_size.saturating_sub(self.written);
            let take = fitting_prefix(rest, room);
            if take > 0 {
                self.append(&rest[..take])?;
                rest = &rest[take..];
                continue;
            }
            // The next line (or the rest of the current one) does not fit.
            let segment = rest
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |i| i + 1) as u64;
            let line = self.open_line + segment;
            if line <= self.max_size && self.written > self.open_line {
                // It fits in a file of its own: carry its start over.
                self.rotate(true)?;
            } else {
                // Longer than a whole file: fill this one, go on in the next.
                let part = room.min(rest.len() as u64) as usize;
                if part > 0 {
                    self.append(&rest[..part])?;
                    rest = &rest[part..];
                }
                self.rotate(false)?;
            }
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("log file is not open"));
        };
        if let Err(e) = file.write_all(bytes) {
            self.file = None;
            return Err(e);
        }
        self.written += bytes.len() as u64;
        match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => self.open_line = (bytes.len() - i - 1) as u64,
            None => self.open_line += bytes.len() as u64,
        }
        Ok(())
    }

    /// Rotates; with `carry`, the unfinished last line moves to the new file.
    fn rotate(&mut self, carry: bool) -> io::Result<()> {
        let mut carried = Vec::new();
        if let Some(file) = self.file.take() {
            if carry && self.open_line > 0 {
                let start = self.written - self.open_line;
                carried = vec![0; self.open_line as usize];
                file.read_exact_at(&mut carried, start)?;
                file.set_len(start)?;
            }
        }
        if self.keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&self.rotated(self.keep))?;
            for i in (1..self.keep).rev() {
                rename_if_exists(&self.rotated(i), &self.rotated(i + 1))?;
            }
            rename_if_exists(&self.path, &self.rotated(1))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        file.set_len(0)?;
        self.file = Some(file);
        self.written = 0;
        self.open_line = 0;
        if !carried.is_empty() {
            self.append(&carried)?;
        }
        Ok(())
    }

    /// Flushes what was written to disk (at EOF).
    pub fn finish(mut self) -> io::Result<()> {
        match self.file.take() {
            Some(mut f) => {
                f.flush()?;
                f.sync_data()
            }
            None => Ok(()),
        }
    }
}

/// The longest prefix of `data` made of whole lines (plus, at its end, a
/// line without its newline yet) that is at most `room` bytes.
fn fitting_prefix(data: &[u8], room: u64) -> usize {
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if data.len() <= room {
        return data.len();
    }
    // The last newline within the first `room` bytes ends the prefix.
    data[..room]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1)
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The logger process' work: copies `input` into a [`RotatingWriter`] on
/// `log_filename` until EOF, then flushes. A failed write (a full disk) is
/// reported on stderr and its data dropped; reading goes on, so the task is
/// never blocked on a full pipe.
pub fn run_logger(
    log_filename: &Path,
    max_size: u64,
    keep: u32,
    mut input: impl Read,
) -> io::Result<()> {
    let mut writer = RotatingWriter::open(log_filename, max_size, keep)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Err(e) = writer.write(&buf[..n]) {
            eprintln!(
                "corral logger: cannot write {}: {e}; {n} bytes dropped",
                log_filename.display()
            );
        }
    }
    writer.finish()
}

// ---------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------

/// A started logger: the write end of its pipe (the executor's stdout or
/// stderr) and the logger process.
#[derive(Debug)]
pub struct Logger {
    /// Hand this to the executor; drop it afterwards.
    pub pipe: OwnedFd,
    /// The logger process.
    pub process: crate::containerizer::ProcessHandle,
}

/// Starts `<corral> logger --log_filename <path> --max_size <n> --keep <k>`
/// reading a new pipe, in its own session, with `/` as working directory and
/// no output of its own. The file is created first, so it exists as soon as
/// this returns.
pub fn spawn_logger(
    corral: &Path,
    log_filename: &Path,
    settings: StreamSettings,
) -> io::Result<Logger> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_filename)?;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut cmd = tokio::process::Command::new(corral);
    cmd.arg("logger")
        .arg("--log_filename")
        .arg(log_filename)
        .arg("--max_size")
        .arg(settings.max_size.to_string())
        .arg("--keep")
        .arg(settings.keep.to_string())
        .current_dir("/")
        .stdin(std::process::Stdio::from(read))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(false);
    // SAFETY: `detach_in_child` makes only async-signal-safe system calls
    // and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(crate::containerizer::detach_in_child);
    }
    let child = cmd.spawn()?;
    // The command (with its copy of the read end) is dropped here: only the
    // logger reads the pipe.
    drop(cmd);
    let process = crate::containerizer::reap_child(child, false, |_| {})?;
    Ok(Logger {
        pipe: write,
        process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn numbered(from: u32, to: u32) -> String {
        (from..to).map(|i| format!("line {i:05}\n")).collect()
    }

    #[test]
    fn parses_options() {
        assert_eq!(LogrotateOptions::parse("").unwrap().rotate, None);
        assert_eq!(LogrotateOptions::parse("rotate 3").unwrap().rotate, Some(3));
        assert_eq!(
            LogrotateOptions::parse("  rotate 0 ; # keep none\n")
                .unwrap()
                .rotate,
            Some(0)
        );
        assert_eq!(
            LogrotateOptions::parse("rotate 2\nrotate 5")
                .unwrap()
                .rotate,
            Some(5)
        );
        for bad in [
            "compress",
            "rotate",
            "rotate x",
            "rotate -1",
            "rotate 3 size 10M",
        ] {
            assert!(LogrotateOptions::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = LogrotateOptions::parse("rotate 3 compress").unwrap_err();
        assert!(e.contains("'compress'"), "{e}");
        assert!(parse_max_size("64KB").is_ok());
        assert_eq!(parse_max_size("2097152B").unwrap(), 2_097_152);
        assert!(parse_max_size("0").is_err());
        assert!(parse_max_size("lots").is_err());
    }

    #[test]
    fn task_overrides_apply_and_bad_ones_are_ignored() {
        let agent = LogrotateSettings::default();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = agent.with_overrides(
            &env(&[
                (ENV_MAX_STDOUT_SIZE, "1MB"),
                (ENV_STDERR_OPTIONS, "rotate 2"),
                ("OTHER", "x"),
            ]),
            "c",
        );
        assert_eq!(s.stdout.max_size, 1 << 20);
        assert_eq!(s.stdout.keep, DEFAULT_KEEP);
        assert_eq!(s.stderr.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(s.stderr.keep, 2);
        let s = agent.with_overrides(
            &env(&[
                (ENV_MAX_STDERR_SIZE, "lots"),
                (ENV_STDOUT_OPTIONS, "compress"),
            ]),
            "c",
        );
        assert_eq!(s, agent);
    }

    #[test]
    fn rotates_by_size_keeping_n_files_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        // 11 bytes a line, 4 lines a file.
        let mut w = RotatingWriter::open(&path, 44, 2).unwrap();
        for i in 0..20 {
            w.write(format!("line {i:05}\n").as_bytes()).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                ("stdout".into(), numbered(16, 20)),
                ("stdout.1".into(), numbered(12, 16)),
                ("stdout.2".into(), numbered(8, 12)),
            ]
        );
    }

    #[test]
    fn one_big_write_is_cut_at_line_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingWriter::open(&path, 50, 9).unwrap();
        w.write(numbered(0, 10).as_bytes()).unwrap();
        w.finish().unwrap();
        // 4 lines (44 bytes) fit in 50; the fifth would overflow.
        assert_eq!(
            files(dir.path()),
            vec![
                ("stdout".into(), numbered(8, 10)),
                ("stdout.1".into(), numbered(4, 8)),
                ("stdout.2".into(), numbered(0, 4)),
            ]
        );
    }

    #[test]
    fn a_line_that_fits_is_never_split_even_when_written_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingWriter::open(&path, 20, 3).unwrap();
        w.write(b"aaaaaaaaa\nbbbb").unwrap();
        // The unfinished line is visible at once.
        assert_eq!(fs::read_to_string(&path).unwrap(), "aaaaaaaaa\nbbbb");
        w.write(b"bbbbbbb").unwrap();
        w.write(b"b\n").unwrap();
        w.finish().unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                ("stdout".into(), "bbbbbbbbbbbb\n".into()),
                ("stdout.1".into(), "aaaaaaaaa\n".into()),
            ]
        );
    }

    #[test]
    fn a_line_longer_than_max_size_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingWriter::open(&path, 10, 5).unwrap();
        w.write(b"ab\n").unwrap();
        w.write(&[b'x'; 25]).unwrap();
        w.write(b"\nend\n").unwrap();
        w.finish().unwrap();
        let all = files(dir.path());
        for (name, content) in &all {
            assert!(content.len() <= 10, "{name}: {content:?}");
        }
        // Oldest first, the pieces put back together are the input.
        let mut joined = String::new();
        for (_, content) in all.iter().rev() {
            joined.push_str(content);
        }
        assert_eq!(joined, format!("ab\n{}\nend\n", "x".repeat(25)));
        assert_eq!(all[0], ("stdout".into(), "end\n".into()));
    }

    #[test]
    fn keep_zero_keeps_no_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr");
        let mut w = RotatingWriter::open(&path, 22, 0).unwrap();
        w.write(numbered(0, 5).as_bytes()).unwrap();
        w.finish().unwrap();
        assert_eq!(files(dir.path()), vec![("stderr".into(), numbered(4, 5))]);
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        fs::write(&path, numbered(0, 3)).unwrap();
        let mut w = RotatingWriter::open(&path, 44, 1).unwrap();
        w.write(numbered(3, 5).as_bytes()).unwrap();
        w.finish().unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                ("stdout".into(), numbered(4, 5)),
                ("stdout.1".into(), numbered(0, 4)),
            ]
        );
    }

    #[test]
    fn the_logger_copies_to_eof_and_flushes_a_last_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut input = numbered(0, 1000).into_bytes();
        input.extend_from_slice(b"no newline at the end");
        run_logger(&path, 2048, 3, &input[..]).unwrap();
        let all = files(dir.path());
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stdout", "stdout.1", "stdout.2", "stdout.3"]);
        for (name, content) in &all {
            assert!(content.len() <= 2048, "{name}");
            assert!(
                content
                    .lines()
                    .all(|l| l.len() == 10 || l == "no newline at the end"),
                "{name} holds a partial line"
            );
        }
        assert!(all[0].1.ends_with("line 00999\nno newline at the end"));
    }
}
