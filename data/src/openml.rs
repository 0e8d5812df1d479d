//! OpenML dataset 42468, `hls4ml_lhc_jets_hlf` (830,000 jets): downloaded over HTTPS on first use,
//! verified against the MD5 that OpenML publishes for the file, and kept in the cache folder.
//!
//! The dataset description (`/api/v1/json/data/42468`) names the ARFF file and its checksum; the file
//! is streamed to a temporary name with a progress bar and renamed into the cache only once it is
//! complete and its checksum matches, so a failed or corrupted download leaves nothing behind.
//! Set `JETSWEEP_OPENML_URL` to use a mirror (the tests use a local HTTP server).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::cache::temp_sibling;
use crate::dataset::{FEATURE_NAMES, NUM_FEATURES, RawTable, hex, parse_label};
use crate::{DataError, Result};

pub const DATASET_ID: u32 = 42468;
pub const DEFAULT_BASE_URL: &str = "https://www.openml.org";
/// Environment variable that overrides [`DEFAULT_BASE_URL`].
pub const BASE_URL_ENV: &str = "JETSWEEP_OPENML_URL";

/// A connection that makes no progress for this long is abandoned; the download is ~100 MB and may be
/// slow, so there is no limit on the whole transfer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The downloaded file, verified, in the cache.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub path: PathBuf,
    pub sha256: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build()
        .into()
}

/// The base URL to use: the argument, else `JETSWEEP_OPENML_URL`, else openml.org.
pub fn base_url(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var(BASE_URL_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// What the description tells us about the file.
struct FileInfo {
    url: String,
    md5: String,
}

fn describe(agent: &ureq::Agent, base: &str) -> Result<FileInfo> {
    let url = format!("{base}/api/v1/json/data/{DATASET_ID}");
    let fail = |reason: String| DataError::Download {
        url: url.clone(),
        reason,
    };
    let text = agent
        .get(&url)
        .call()
        .map_err(|e| fail(e.to_string()))?
        .body_mut()
        .read_to_string()
        .map_err(|e| fail(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let d = &json["data_set_description"];
    let field = |k: &str| {
        d[k].as_str()
            .map(str::to_string)
            .or_else(|| d[k].as_u64().map(|n| n.to_string()))
    };
    let md5 =
        field("md5_checksum").ok_or_else(|| fail("the description has no md5_checksum".into()))?;
    let url = match (field("url"), field("file_id")) {
        (Some(u), _) => u,
        (None, Some(id)) => format!("{base}/data/v1/download/{id}"),
        (None, None) => {
            return Err(fail(
                "the description names no file (url or file_id)".into(),
            ));
        }
    };
    Ok(FileInfo {
        url,
        md5: md5.to_ascii_lowercase(),
    })
}

/// Downloads the ARFF file into `dir` unless a verified copy is already there.
pub fn fetch(dir: &Path, base: &str, progress: bool) -> Result<Downloaded> {
    let final_path = dir.join(format!("openml-{DATASET_ID}.arff"));
    let sha_path = dir.join(format!("openml-{DATASET_ID}.arff.sha256"));
    if let (Ok(_), Ok(sha)) = (fs::metadata(&final_path), fs::read_to_string(&sha_path)) {
        return Ok(Downloaded {
            path: final_path,
            sha256: sha.trim().to_string(),
        });
    }
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let agent = agent();
    let info = describe(&agent, base)?;
    let tmp = temp_sibling(&final_path);
    let result = stream_to(&agent, &info, &tmp, progress);
    let sha256 = match result {
        Ok(sha) => sha,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, &final_path).map_err(|e| DataError::io(&final_path, e))?;
    crate::cache::write_atomically(&sha_path, sha256.as_bytes())?;
    Ok(Downloaded {
        path: final_path,
        sha256,
    })
}

/// Streams the file to `tmp`, hashing as it goes; returns its sha256 if the MD5 matches.
fn stream_to(agent: &ureq::Agent, info: &FileInfo, tmp: &Path, progress: bool) -> Result<String> {
    let fail = |reason: String| DataError::Download {
        url: info.url.clone(),
        reason,
    };
    let mut response = agent
        .get(&info.url)
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let total = response.body().content_length();
    let bar = if progress {
        indicatif::ProgressBar::new(total.unwrap_or(0))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a fixed template is valid"),
    );
    bar.set_message(format!("downloading OpenML {DATASET_ID}"));
    let mut reader = response.body_mut().as_reader();
    let mut file = fs::File::create(tmp).map_err(|e| DataError::io(tmp, e))?;
    let (mut md5, mut sha) = (Md5::new(), Sha256::new());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp, e))?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(|e| DataError::io(tmp, e))?;
    bar.finish_and_clear();
    let actual = hex(&md5.finalize());
    if actual != info.md5 {
        return Err(DataError::ChecksumMismatch {
            url: info.url.clone(),
            algorithm: "md5",
            expected: info.md5.clone(),
            actual,
        });
    }
    Ok(hex(&sha.finalize()))
}

/// Reads the ARFF file: `@attribute` lines name the columns (OpenML's names, without MASE's `j_`
/// prefix), `@data` starts comma-separated rows; the nominal `class` column holds g,q,t,w,z.
pub fn read_arff(path: &Path) -> Result<RawTable> {
    let file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut attributes: Vec<String> = Vec::new();
    let mut columns: Option<([usize; NUM_FEATURES], usize)> = None;
    let mut table = RawTable::default();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| DataError::io(path, e))?;
        let bad = |reason: String| DataError::BadRow {
            path: path.to_path_buf(),
            line: n as u64 + 1,
            reason,
        };
        let text = line.trim();
        if text.is_empty() || text.starts_with('%') {
            continue;
        }
        let Some((feature_cols, class_col)) = columns else {
            let lower = text.to_ascii_lowercase();
            if lower.starts_with("@attribute") {
                let name = text[10..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches('\'')
                    .to_ascii_lowercase();
                attributes.push(name);
            } else if lower.starts_with("@data") {
                let find = |name: &str| attributes.iter().position(|a| a == name);
                let mut cols = [0; NUM_FEATURES];
                for (slot, name) in cols.iter_mut().zip(FEATURE_NAMES) {
                    let bare = name.trim_start_matches("j_");
                    *slot = find(bare).or_else(|| find(name)).ok_or_else(|| {
                        DataError::MissingColumn {
                            path: path.to_path_buf(),
                            column: bare.to_string(),
                            found: attributes.join(","),
                        }
                    })?;
                }
                let class = find("class").ok_or_else(|| DataError::MissingColumn {
                    path: path.to_path_buf(),
                    column: "class".into(),
                    found: attributes.join(","),
                })?;
                columns = Some((cols, class));
            }
            continue;
        };
        let cells: Vec<&str> = text.split(',').map(str::trim).collect();
        if cells.len() != attributes.len() {
            return Err(bad(format!(
                "{} values, the header declares {} attributes",
                cells.len(),
                attributes.len()
            )));
        }
        let mut row = [0f32; NUM_FEATURES];
        for (v, &c) in row.iter_mut().zip(&feature_cols) {
            *v = cells[c].parse().map_err(|_| {
                bad(format!(
                    "{} = {:?} is not a number",
                    attributes[c], cells[c]
                ))
            })?;
        }
        let label = parse_label(cells[class_col]).ok_or_else(|| {
            bad(format!(
                "class {:?} is not one of g,q,t,w,z",
                cells[class_col]
            ))
        })?;
        table.push(&row, label);
    }
    if columns.is_none() {
        return Err(DataError::BadFormat {
            path: path.to_path_buf(),
            reason: "no @data section: not an ARFF file".into(),
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    //! The download path against a local HTTP server serving a small fixture in OpenML's layout.
    use super::*;
    use crate::source::{DatasetSpec, LoadOptions, load};

    const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/openml-42468-sample.arff");

    /// What the fake OpenML answers.
    #[derive(Clone, Copy)]
    enum Mode {
        Good,
        WrongChecksum,
        DescriptionFails,
        FileFails,
    }

    /// Serves the description and the file on 127.0.0.1; returns the base URL.
    fn serve(mode: Mode) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let file_url = format!("{base}/data/v1/download/22044302/hls4ml_lhc_jets_hlf.arff");
        let md5 = match mode {
            Mode::WrongChecksum => "0123456789abcdef0123456789abcdef".to_string(),
            _ => hex(&Md5::digest(FIXTURE)),
        };
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let url = request.url().to_string();
                let response = if url == format!("/api/v1/json/data/{DATASET_ID}") {
                    if let Mode::DescriptionFails = mode {
                        tiny_http::Response::from_string("internal error").with_status_code(500)
                    } else {
                        let body = serde_json::json!({"data_set_description": {
                            "id": "42468", "name": "hls4ml_lhc_jets_hlf", "file_id": "22044302",
                            "url": file_url, "md5_checksum": md5, "format": "ARFF"}});
                        tiny_http::Response::from_string(body.to_string())
                    }
                } else if url.starts_with("/data/v1/download/22044302/") {
                    if let Mode::FileFails = mode {
                        tiny_http::Response::from_string("gone").with_status_code(503)
                    } else {
                        tiny_http::Response::from_data(FIXTURE.to_vec())
                    }
                } else {
                    tiny_http::Response::from_string("not found").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        });
        base
    }

    fn visible_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn downloads_verifies_caches_and_maps_labels() {
        let base = serve(Mode::Good);
        let cache = tempfile::tempdir().unwrap();
        let options = LoadOptions {
            cache_dir: cache.path().to_path_buf(),
            openml_url: Some(base),
            progress: false,
            ..Default::default()
        };
        let data = load(&DatasetSpec::OpenMl, &options).unwrap();
        assert_eq!(data.provenance.raw_rows, 40);
        assert_eq!(data.provenance.train_rows, 32);
        assert_eq!(
            data.provenance.source_sha256.as_deref(),
            Some(hex(&Sha256::digest(FIXTURE)).as_str())
        );
        assert!(!data.provenance.synthetic);
        let mut files = visible_files(&cache.path().join("downloads"));
        files.sort();
        assert_eq!(files, vec!["openml-42468.arff", "openml-42468.arff.sha256"]);
        // OpenML's alphabetical classes g,q,t,w,z become MASE's g,q,W,Z,t: the fixture cycles g,q,t,w,z.
        let raw = read_arff(&cache.path().join("downloads/openml-42468.arff")).unwrap();
        assert_eq!(&raw.labels[..5], &[0, 1, 4, 2, 3]);
        // A second load uses the cache, with no server at all.
        let offline = LoadOptions {
            openml_url: Some("http://127.0.0.1:9".into()),
            ..options
        };
        assert_eq!(load(&DatasetSpec::OpenMl, &offline).unwrap(), data);
    }

    #[test]
    fn checksum_mismatch_leaves_nothing_in_the_cache() {
        let base = serve(Mode::WrongChecksum);
        let cache = tempfile::tempdir().unwrap();
        let err = fetch(&cache.path().join("downloads"), &base, false).unwrap_err();
        assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("0123456789abcdef"), "{err}");
        assert_eq!(
            visible_files(&cache.path().join("downloads")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn server_errors_are_reported_with_the_url_and_leave_nothing() {
        for mode in [Mode::DescriptionFails, Mode::FileFails] {
            let base = serve(mode);
            let cache = tempfile::tempdir().unwrap();
            let err = fetch(&cache.path().join("downloads"), &base, false).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, DataError::Download { .. }), "{text}");
            assert!(
                text.contains("127.0.0.1") && (text.contains("500") || text.contains("503")),
                "{text}"
            );
            assert_eq!(
                visible_files(&cache.path().join("downloads")),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn unreachable_server_is_a_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let err = fetch(&cache.path().join("downloads"), "http://127.0.0.1:9", false).unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    }
}
