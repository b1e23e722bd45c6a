//! Writing an output file so that a reader sees all of it or none of it, and nothing else
//! on the machine is touched.
//!
//! - A regular file (or a name that does not exist yet) is written to a temporary file in
//!   the same directory and renamed over the name when complete, then the directory is
//!   fsynced, so the rename survives a crash. The temporary is created exclusively, with
//!   an unpredictable name and without following links (`tempfile`): nobody can plant a
//!   link there and have ream write through it. It is removed when the write fails.
//! - A symlink is followed: its target is replaced, in the target's own directory, and
//!   the link stays.
//! - A FIFO, a character device (`/dev/null`, a terminal) or a socket is written directly:
//!   renaming a file over it would replace the device itself.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An output being written: `commit` makes it visible at its path; dropping it without
/// `commit` leaves nothing there (and removes the temporary).
pub struct OutputFile {
    target: PathBuf,
    inner: Inner,
}

enum Inner {
    /// A temporary file, renamed over `target` on commit.
    Replace(BufWriter<tempfile::NamedTempFile>),
    /// A FIFO, device or socket, written in place.
    Direct(BufWriter<File>),
    Done,
}

/// Buffer of the writer: the runner hands over 64 KiB chunks.
const BUFFER: usize = 64 * 1024;

impl OutputFile {
    /// Start writing `path`. Fails for a directory, or where the temporary cannot be made.
    pub fn create(path: &Path) -> io::Result<OutputFile> {
        let target = resolve_links(path)?;
        match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory")),
            Ok(m) if is_special(&m.file_type()) => {
                let file = OpenOptions::new().write(true).open(&target)?;
                Ok(OutputFile { target, inner: Inner::Direct(BufWriter::with_capacity(BUFFER, file)) })
            }
            existing => {
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp =
                    tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".ream.tmp").tempfile_in(&dir)?;
                // tempfile makes it 0600; give it the mode the file has, or a new file's.
                let mode = existing.map(|m| m.permissions().mode()).unwrap_or_else(|_| 0o666 & !umask());
                tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
                Ok(OutputFile { target, inner: Inner::Replace(BufWriter::with_capacity(BUFFER, tmp)) })
            }
        }
    }

    /// The file that will hold the output (a symlink's target).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Make the output visible: flush, fsync, rename over the target, fsync the
    /// directory. Returns the bytes written.
    pub fn commit(mut self) -> io::Result<u64> {
        match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Replace(w) => {
                let tmp = w.into_inner().map_err(|e| e.into_error())?;
                tmp.as_file().sync_all()?;
                let len = tmp.as_file().metadata()?.len();
                tmp.persist(&self.target).map_err(|e| e.error)?;
                if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    File::open(dir)?.sync_all()?;
                }
                Ok(len)
            }
            Inner::Direct(mut w) => {
                w.flush()?;
                Ok(0)
            }
            Inner::Done => Ok(0),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Replace(w) => w.write(buf),
            Inner::Direct(w) => w.write(buf),
            Inner::Done => Err(io::Error::other("the output was committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Replace(w) => w.flush(),
            Inner::Direct(w) => w.flush(),
            Inner::Done => Ok(()),
        }
    }
}

/// `path` names no file, or an empty directory (`what` writes into it).
fn empty_or_absent(path: &Path, what: &str) -> Result<(), String> {
    match std::fs::read_dir(path).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(format!("{}: {what} writes into an empty directory", path.display())),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `path`'s directory (`.` for a bare name) and its last segment.
fn parent_and_name(path: &Path) -> (PathBuf, String) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    (dir, path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

fn is_special(t: &std::fs::FileType) -> bool {
    t.is_fifo() || t.is_char_device() || t.is_socket() || t.is_block_device()
}

/// Follow symlinks (relative ones from their own directory) to the path that is really
/// written; a dangling link resolves to the file it names.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// The process's umask, from /proc (reading it through umask(2) would change it); 022
/// where /proc does not say.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

/// A split run's files in a directory (the CLI's `-o`): each part through an
/// [`OutputFile`], the hive directories made as they come.
pub struct DirParts {
    dir: PathBuf,
    /// Directories this run made, removed again (when empty) if it fails.
    made: Vec<PathBuf>,
}

impl DirParts {
    /// Where a split run of `format` (compressed with `compress`) named `output` goes.
    /// Without `by`: beside `output` (`sales.csv` gives `sales-00001.csv` and
    /// `sales.manifest.json`). With `by`: `output` is a directory, absent or empty, that
    /// gets `FIELD=value/part-00001.csv`, and `sales.manifest.json` is beside it (so the
    /// directory holds only the dataset's files).
    pub fn for_output(
        output: &Path,
        format: ream_render::Format,
        compress: crate::Compression,
        hive: bool,
    ) -> Result<(DirParts, crate::PartNames), String> {
        let ext = match compress.extension() {
            Some(c) => format!("{}.{c}", format.name()),
            None => format.name().to_string(),
        };
        if hive {
            empty_or_absent(output, "a split by field")?;
        }
        let (dir, file) = parent_and_name(output);
        if hive {
            let names = crate::PartNames { manifest: format!("{file}.manifest.json"), stem: file, ext };
            return Ok((DirParts { dir, made: vec![] }, names));
        }
        let stem = [format!(".{ext}"), format!(".{}", format.name())]
            .iter()
            .find_map(|suffix| file.strip_suffix(suffix.as_str()))
            .unwrap_or(&file)
            .to_string();
        let names = crate::PartNames { manifest: format!("{stem}.manifest.json"), stem, ext };
        Ok((DirParts { dir, made: vec![] }, names))
    }

    /// Where a burst run's files go: into `dir`, absent or empty, each by its own name,
    /// and `manifest.json` there, written last (its paths are relative to it).
    pub fn for_bursts(dir: &Path) -> Result<(DirParts, crate::PartNames), String> {
        empty_or_absent(dir, "a burst run")?;
        let names = crate::PartNames { manifest: "manifest.json".into(), stem: String::new(), ext: String::new() };
        Ok((DirParts { dir: dir.to_path_buf(), made: vec![] }, names))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// After a complete run: remove the parts of an earlier, longer run of the same name
    /// (`sales-00007.csv` when this one wrote six, numbered from 1), so that
    /// `sales-*.csv` is this run.
    pub fn remove_stale(&self, names: &crate::PartNames, manifest: &crate::Manifest) -> io::Result<()> {
        let written = manifest.files.len();
        let prefix = format!("{}-", names.stem);
        let suffix = format!(".{}", names.ext);
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(&suffix));
            let number = number.filter(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()));
            let stale = number.is_some_and(|n| n.parse::<u64>().map_or(true, |n| n == 0 || n > written));
            if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    fn make_dirs(&mut self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.make_dirs(parent)?;
        }
        std::fs::create_dir(dir)?;
        self.made.push(dir.to_path_buf());
        Ok(())
    }
}

impl crate::PendingPart for OutputFile {
    fn commit(self: Box<Self>) -> io::Result<()> {
        OutputFile::commit(*self).map(|_| ())
    }
}

impl crate::PartStore for DirParts {
    fn create(&mut self, path: &str) -> io::Result<Box<dyn crate::PendingPart>> {
        let target = self.dir.join(path);
        if let Some(parent) = target.parent() {
            self.make_dirs(parent)?;
        }
        Ok(Box::new(OutputFile::create(&target)?))
    }

    fn remove(&mut self, path: &str) {
        let _ = std::fs::remove_file(self.dir.join(path));
    }
}

impl Drop for DirParts {
    /// The directories a failed run made, now empty, go too (a complete run's are not
    /// empty).
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_appears_whole_on_commit_and_not_at_all_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"a,b\n").unwrap();
        assert!(!path.exists(), "visible before commit");
        assert_eq!(out.commit().unwrap(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), b"a,b\n");
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"partial").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"a,b\n", "a dropped write changed the file");
        assert_eq!(names(dir.path()), vec!["out.csv"], "a temporary was left");
    }

    #[test]
    fn two_writers_of_one_path_use_two_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut a = OutputFile::create(&path).unwrap();
        let mut b = OutputFile::create(&path).unwrap();
        a.write_all(b"a").unwrap();
        b.write_all(b"b").unwrap();
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
        assert_eq!(names(dir.path()), vec!["out.csv"]);
    }

    #[test]
    fn a_symlink_keeps_pointing_at_its_target_which_is_replaced_in_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        std::fs::create_dir(&real_dir).unwrap();
        std::fs::write(real_dir.join("target.csv"), b"old").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink("real/target.csv", &link).unwrap();
        let mut out = OutputFile::create(&link).unwrap();
        out.write_all(b"new").unwrap();
        out.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(std::fs::read(real_dir.join("target.csv")).unwrap(), b"new");
        assert_eq!(names(&real_dir), vec!["target.csv"]);
    }

    #[test]
    fn a_fifo_and_dev_null_are_written_in_place() {
        let mut out = OutputFile::create(Path::new("/dev/null")).unwrap();
        out.write_all(b"nothing").unwrap();
        out.commit().unwrap();
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let mut out = OutputFile::create(&fifo).unwrap();
        out.write_all(b"through the pipe").unwrap();
        out.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    }

    #[test]
    fn a_new_file_gets_the_usual_mode_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let out = OutputFile::create(&path).unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o666 & !umask());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        OutputFile::create(&path).unwrap().commit().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
