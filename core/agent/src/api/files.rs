//! `/files/browse`, `/files/read` and `/files/download`, as Mesos serves
//! them, for sandbox paths: the absolute path inside the work dir, or the
//! virtual `/frameworks/<fw>/executors/<ex>/runs/<run|latest>/...`.
//! Nothing outside the work dir (or the named sandbox) is ever served.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use super::{json_response, ApiError};
use crate::agent::{lock, Agent};
use crate::paths;

/// Largest read `/files/read` returns (16 pages, as Mesos).
pub const MAX_READ_BYTES: u64 = 16 * 4096;

/// Maps a requested path to a real path inside the work dir, refusing
/// traversal and symlinks that leave the allowed root.
pub fn resolve(agent: &Agent, requested: &str) -> Result<PathBuf, ApiError> {
    if requested.is_empty() {
        return Err(ApiError::bad_request("Expecting 'path=value' in query."));
    }
    if requested.contains('\0') {
        return Err(ApiError::bad_request("path contains a NUL character"));
    }
    let work_dir = &agent.config.work_dir;
    let trimmed = requested.trim_start_matches('/');
    let (root, rest): (PathBuf, Vec<&str>) =
        if trimmed.starts_with("frameworks/") || trimmed == "frameworks" {
            let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
            let [_, fw, executors, ex, runs, run, rest @ ..] = parts.as_slice() else {
                return Err(ApiError::not_found(format!("{requested} not found")));
            };
            if *executors != "executors" || *runs != "runs" {
                return Err(ApiError::not_found(format!("{requested} not found")));
            }
            for (kind, id) in [("framework", fw), ("executor", ex), ("run", run)] {
                paths::validate_id(kind, id).map_err(ApiError::bad_request)?;
            }
            let st = lock(&agent.state);
            let Some(agent_id) = st.agent_id.as_ref().map(|a| a.value.clone()) else {
                return Err(ApiError::not_found(format!("{requested} not found")));
            };
            let run = if *run == "latest" {
                let current = st.frameworks.get(*fw).and_then(|f| {
                    f.executors
                        .get(*ex)
                        .map(|e| e.container_id.clone())
                        .or_else(|| {
                            f.completed_executors
                                .iter()
                                .rev()
                                .find(|e| e.info.executor_id.value == *ex)
                                .map(|e| e.container_id.clone())
                        })
                });
                current.unwrap_or_else(|| "latest".into())
            } else {
                (*run).to_string()
            };
            drop(st);
            (
                paths::sandbox_dir(work_dir, &agent_id, fw, ex, &run),
                rest.to_vec(),
            )
        } else if requested.starts_with('/') {
            let Ok(rel) = Path::new(requested).strip_prefix(work_dir) else {
                return Err(ApiError::not_found(format!("{requested} not found")));
            };
            let rest: Vec<&str> = rel
                .to_str()
                .unwrap_or("")
                .split('/')
                .filter(|p| !p.is_empty())
                .collect();
            (work_dir.clone(), rest)
        } else {
            return Err(ApiError::bad_request("path must be absolute"));
        };
    let mut full = root.clone();
    for part in &rest {
        match Path::new(part).components().next() {
            Some(Component::Normal(_)) => full.push(part),
            Some(Component::CurDir) => {}
            _ => return Err(ApiError::bad_request("path must not contain '..'")),
        }
    }
    let not_found = || ApiError::not_found(format!("{requested} not found"));
    let canonical_root = std::fs::canonicalize(&root).map_err(|_| not_found())?;
    let canonical = std::fs::canonicalize(&full).map_err(|_| not_found())?;
    let canonical_work = std::fs::canonicalize(work_dir).map_err(|_| not_found())?;
    if !canonical.starts_with(&canonical_root) || !canonical.starts_with(&canonical_work) {
        return Err(not_found());
    }
    Ok(canonical)
}

fn mode_string(meta: &std::fs::Metadata) -> String {
    let mode = meta.mode();
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// One entry as Mesos lists it.
pub fn file_json(path: &str, meta: &std::fs::Metadata) -> serde_json::Value {
    serde_json::json!({
        "path": path,
        "nlink": meta.nlink(),
        "size": meta.len(),
        "mtime": meta.mtime() as f64,
        "mode": mode_string(meta),
        "uid": user_name(meta.uid()),
        "gid": group_name(meta.gid()),
    })
}

/// Lists a directory (or describes a file): `(requested path of the entry, metadata)`.
pub fn list(agent: &Agent, requested: &str) -> Result<Vec<(String, std::fs::Metadata)>, ApiError> {
    let real = resolve(agent, requested)?;
    let meta = std::fs::metadata(&real)
        .map_err(|_| ApiError::not_found(format!("{requested} not found")))?;
    if !meta.is_dir() {
        return Ok(vec![(requested.to_string(), meta)]);
    }
    let entries = std::fs::read_dir(&real)
        .map_err(|_| ApiError::not_found(format!("{requested} not found")))?;
    let base = requested.trim_end_matches('/');
    let mut out: Vec<(String, std::fs::Metadata)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            Some((format!("{base}/{}", e.file_name().to_string_lossy()), meta))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads up to `length` bytes at `offset`; `None` offset means "report the
/// size". Returns `(offset, data, size)`.
pub fn read_range(
    agent: &Agent,
    requested: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> Result<(u64, Vec<u8>, u64), ApiError> {
    use std::io::{Read, Seek, SeekFrom};
    let real = resolve(agent, requested)?;
    if real.is_dir() {
        return Err(ApiError::bad_request("Cannot read a directory."));
    }
    let mut file = std::fs::File::open(&real)
        .map_err(|_| ApiError::not_found(format!("{requested} not found")))?;
    let size = file
        .metadata()
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot stat file: {e}"),
            )
        })?
        .len();
    let Some(offset) = offset else {
        return Ok((size, Vec::new(), size));
    };
    if offset >= size {
        return Ok((size, Vec::new(), size));
    }
    let length = length
        .unwrap_or(MAX_READ_BYTES)
        .min(MAX_READ_BYTES)
        .min(size - offset);
    file.seek(SeekFrom::Start(offset)).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot seek: {e}"),
        )
    })?;
    let mut data = Vec::with_capacity(length as usize);
    file.take(length).read_to_end(&mut data).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read: {e}"),
        )
    })?;
    Ok((offset, data, size))
}

fn path_param(q: &HashMap<String, String>) -> Result<&str, ApiError> {
    q.get("path")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("Expecting 'path=value' in query."))
}

fn int_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("Failed to parse {name}: '{v}' is not a number"))
        }),
    }
}

/// `GET /files/browse?path=`.
pub async fn browse(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = path_param(&q).and_then(|p| list(&agent, p));
    match result {
        Ok(entries) => json_response(&serde_json::Value::Array(
            entries.iter().map(|(p, m)| file_json(p, m)).collect(),
        )),
        Err(e) => e.into_response(),
    }
}

/// `GET /files/read?path=&offset=&length=`.
pub async fn read(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = (|| {
        let path = path_param(&q)?;
        let offset = match int_param(&q, "offset")? {
            None | Some(-1) => None,
            Some(o) if o < -1 => {
                return Err(ApiError::bad_request(format!(
                    "Negative offset provided: {o}"
                )))
            }
            Some(o) => Some(o as u64),
        };
        let length = match int_param(&q, "length")? {
            None | Some(-1) => None,
            Some(l) if l < -1 => {
                return Err(ApiError::bad_request(format!(
                    "Negative length provided: {l}"
                )))
            }
            Some(l) => Some(l as u64),
        };
        read_range(&agent, path, offset, length)
    })();
    match result {
        Ok((offset, data, _)) => json_response(&serde_json::json!({
            "data": String::from_utf8_lossy(&data),
            "offset": offset,
        })),
        Err(e) => e.into_response(),
    }
}

/// `GET /files/download?path=`: the file as an attachment.
pub async fn download(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let real = match path_param(&q).and_then(|p| resolve(&agent, p)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if real.is_dir() {
        return ApiError::bad_request("Cannot download a directory.").into_response();
    }
    let file = match tokio::fs::File::open(&real).await {
        Ok(f) => f,
        Err(_) => return ApiError::not_found("file not found").into_response(),
    };
    let name = real
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .unwrap_or_else(|| "download".into());
    let stream = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
