//! A private certificate authority and a server certificate signed by it, made with the `openssl`
//! command, as a cluster's operators would make them.

use std::path::Path;
use std::process::Command;

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`: a server certificate for the IP
/// addresses `ips`, signed by the authority in `ca.pem`. Errors: openssl missing or failing.
pub fn make_certificates(dir: &Path, ips: &[&str]) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let days = ["-days", "2"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &days,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=jetsweep test CA",
        ],
    ]
    .concat())?;
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr", "-subj"],
        &[&format!("/CN={}", ips[0])],
    ]
    .concat())?;
    let names: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
            names.join(",")
        ),
    )
    .map_err(|e| e.to_string())?;
    run(&[
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ][..],
        &days,
    ]
    .concat())
}
