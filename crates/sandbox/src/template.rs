//! The cached template datadir.
//!
//! `mysqld --initialize-insecure` takes ~10 s, so it runs once per machine
//! (per MySQL version and per version of the bootstrap SQL) into
//! `<work_dir>/template-<version>-<hash>`. The sandbox accounts are created
//! during initialization (`--init-file`, binary log off), so every copy
//! starts with the same users and an empty `gtid_executed`. Builders are
//! serialized by a process-wide mutex plus `flock` on `<work_dir>/template.lock`;
//! the template is built in a temporary directory and renamed into place, so
//! a half-built template is never used. Servers copy it with `cp -a` and
//! delete `auto.cnf` so each gets a fresh `server_uuid`.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use crate::dist::MysqlDist;
use crate::flavor::Flavor;
use crate::process::{self, ProcessError};
use crate::users;

/// Errors while building or copying the template datadir.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Filesystem error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Could not start mysqld.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// `mariadb-install-db` or the MariaDB bootstrap failed.
    #[error("{step} failed ({status}) in {dir}; output tail:\n{log}")]
    MariadbInit {
        /// Which step.
        step: &'static str,
        /// Exit status.
        status: String,
        /// The build directory (kept for inspection).
        dir: PathBuf,
        /// Output tail.
        log: String,
    },
    /// `mysqld --initialize-insecure` failed.
    #[error("mysqld --initialize-insecure failed ({status}) in {dir}; error log tail:\n{log}")]
    Initialize {
        /// Exit status.
        status: String,
        /// The build directory (kept for inspection).
        dir: PathBuf,
        /// Tail of the error log.
        log: String,
    },
    /// Copying the template failed.
    #[error("cp -a {from} {to} failed: {detail}")]
    Copy {
        /// Source.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
        /// cp's stderr.
        detail: String,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io { what, path, source }
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Where the template for `dist` lives (it may not exist yet).
pub fn template_path(dist: &MysqlDist) -> PathBuf {
    let sql = users::bootstrap_sql_for(dist.flavor());
    let version: String = dist
        .version()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dist.work_dir()
        .join(format!("template-{version}-{:08x}", fnv32(sql.as_bytes())))
}

/// Returns the template datadir, building it if needed. Blocking.
pub fn ensure_template(dist: &MysqlDist) -> Result<PathBuf, TemplateError> {
    let path = template_path(dist);
    if path.is_dir() {
        return Ok(path);
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let work = dist.work_dir();
    fs::create_dir_all(&work).map_err(io_err("creating", &work))?;
    let lock_path = work.join("template.lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    // SAFETY: flock on a valid open fd; released when the file is closed.
    if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err("locking", &lock_path)(
            std::io::Error::last_os_error(),
        ));
    }
    if path.is_dir() {
        return Ok(path);
    }
    build(dist, &path)?;
    Ok(path)
}

fn build(dist: &MysqlDist, final_path: &Path) -> Result<(), TemplateError> {
    if dist.flavor() == Flavor::Mariadb {
        return build_mariadb(dist, final_path);
    }
    let started = Instant::now();
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = final_path.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err("removing", &tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
    let data = tmp.join("data");
    let sql_path = tmp.join("bootstrap.sql");
    let log_path = tmp.join("init.log");
    let cnf_path = tmp.join("init.cnf");
    fs::write(&sql_path, users::bootstrap_sql()).map_err(io_err("writing", &sql_path))?;
    let mut cnf = String::from("[mysqld]\n");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cnf.push_str("user=root\n");
    }
    let inner = |p: &Path| dist.inner_path(p).display().to_string();
    cnf.push_str(&format!(
        "datadir={}\nlog-error={}\ninit-file={}\nskip-log-bin\nsecure-file-priv=\nmysqlx=OFF\n\
         innodb-redo-log-capacity=32M\ninnodb-buffer-pool-size=64M\n",
        inner(&data),
        inner(&log_path),
        inner(&sql_path),
    ));
    let mut f = fs::File::create(&cnf_path).map_err(io_err("writing", &cnf_path))?;
    f.write_all(cnf.as_bytes())
        .map_err(io_err("writing", &cnf_path))?;
    drop(f);

    tracing::info!(template = %final_path.display(), "initializing MySQL template datadir");
    let mut cmd = dist.mysqld_command();
    cmd.arg(format!("--defaults-file={}", inner(&cnf_path)))
        .arg("--initialize-insecure")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = process::spawn_tied(cmd)?;
    let status = child
        .wait()
        .map_err(io_err("waiting for mysqld in", &tmp))?;
    let log = process::tail(&log_path, 40);
    if !status.success() || log.contains("[ERROR]") {
        return Err(TemplateError::Initialize {
            status: status.to_string(),
            dir: tmp,
            log,
        });
    }
    for f in ["auto.cnf", "ib_buffer_pool"] {
        let _ = fs::remove_file(data.join(f));
    }
    match fs::rename(&data, final_path) {
        Ok(()) => {}
        // Someone else (not honoring the lock) won the race: use theirs.
        Err(_) if final_path.is_dir() => {}
        Err(e) => return Err(io_err("renaming into", final_path)(e)),
    }
    let _ = fs::remove_dir_all(&tmp);
    tracing::info!(elapsed = ?started.elapsed(), "MySQL template datadir ready");
    Ok(())
}

/// The MariaDB template: `mariadb-install-db` (system tables), then
/// `mariadbd --bootstrap` with the sandbox accounts on stdin, binary log
/// off so every copy starts with an empty `gtid_binlog_pos`.
fn build_mariadb(dist: &MysqlDist, final_path: &Path) -> Result<(), TemplateError> {
    let started = Instant::now();
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = final_path.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err("removing", &tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
    let data = tmp.join("data");
    let sql_path = tmp.join("bootstrap.sql");
    let cnf_path = tmp.join("init.cnf");
    let log_path = tmp.join("init.log");
    let inner = |p: &Path| dist.inner_path(p).display().to_string();
    fs::write(&sql_path, users::bootstrap_sql_for(Flavor::Mariadb))
        .map_err(io_err("writing", &sql_path))?;
    let cnf = format!(
        "[mysqld]\nuser=root\ndatadir={}\nskip-log-bin\nskip-name-resolve\n\
         innodb-log-file-size=32M\ninnodb-buffer-pool-size=64M\n",
        inner(&data)
    );
    fs::write(&cnf_path, cnf).map_err(io_err("writing", &cnf_path))?;
    tracing::info!(template = %final_path.display(), "initializing MariaDB template datadir");
    let log = fs::File::create(&log_path).map_err(io_err("creating", &log_path))?;
    let log2 = log.try_clone().map_err(io_err("creating", &log_path))?;
    let mut cmd = dist.tool_command("mariadb-install-db");
    cmd.arg(format!("--defaults-file={}", inner(&cnf_path)))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .args(["--force", "--skip-name-resolve"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    run_step(cmd, "mariadb-install-db", &tmp, &log_path, None)?;
    let mut cmd = dist.mysqld_command();
    cmd.arg(format!("--defaults-file={}", inner(&cnf_path)))
        .arg("--bootstrap")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run_step(
        cmd,
        "mariadbd --bootstrap",
        &tmp,
        &log_path,
        Some(&sql_path),
    )?;
    let _ = fs::remove_file(data.join("ib_buffer_pool"));
    match fs::rename(&data, final_path) {
        Ok(()) => {}
        Err(_) if final_path.is_dir() => {}
        Err(e) => return Err(io_err("renaming into", final_path)(e)),
    }
    let _ = fs::remove_dir_all(&tmp);
    tracing::info!(elapsed = ?started.elapsed(), "MariaDB template datadir ready");
    Ok(())
}

/// Runs one template step (stdin from `input` when given) and checks it.
fn run_step(
    mut cmd: Command,
    step: &'static str,
    dir: &Path,
    log_path: &Path,
    input: Option<&Path>,
) -> Result<(), TemplateError> {
    if let Some(input) = input {
        let f = fs::File::open(input).map_err(io_err("opening", input))?;
        cmd.stdin(f);
    }
    let child = process::spawn_tied(cmd)?;
    let out = child
        .wait_with_output()
        .map_err(io_err("waiting for", dir))?;
    if out.status.success() {
        return Ok(());
    }
    let mut log = process::tail(log_path, 30);
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(TemplateError::MariadbInit {
        step,
        status: out.status.to_string(),
        dir: dir.to_path_buf(),
        log,
    })
}

/// Copies the template to `dest` (which must not exist) and removes `auto.cnf`.
pub fn copy_template(template: &Path, dest: &Path) -> Result<(), TemplateError> {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(template)
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("running cp for", dest))?;
    if !out.status.success() {
        return Err(TemplateError::Copy {
            from: template.to_path_buf(),
            to: dest.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let _ = fs::remove_file(dest.join("auto.cnf"));
    Ok(())
}

/// Removes template build directories left by dead processes.
pub fn sweep_stale_builds(work: &Path) {
    let Ok(entries) = fs::read_dir(work) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("template-") {
            continue;
        }
        let Some((_, pid)) = name.rsplit_once(".tmp-") else {
            continue;
        };
        if let Ok(pid) = pid.parse::<u32>() {
            if !process::pid_alive(pid) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
