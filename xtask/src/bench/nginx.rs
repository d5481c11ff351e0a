//! The proxy a user would deploy instead of an agent: Debian's nginx, one worker, as a TLS
//! reverse proxy (`proxy_pass https://` to a keep-alive upstream, TLS on both hops) and as a
//! plaintext one, in its own prefix directory, started and stopped by the bench.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::peers::Cert;
use super::procs::{free_port, wait_listening, Guard};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx: `tls_port` → https upstream, `plain_port` → http upstream.
pub struct Nginx {
    _guard: Guard,
    pub tls_port: u16,
    pub plain_port: u16,
}

/// The configuration: one worker, no logs, keep-alive upstreams, no buffering.
pub fn config(dir: &Path, cert: &Cert, ports: [u16; 4]) -> String {
    let [tls_port, plain_port, tls_upstream, plain_upstream] = ports;
    let p = dir.display();
    let location = |up: &str, scheme: &str| {
        format!(
            "location / {{ proxy_pass {scheme}://{up}; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; proxy_set_header Host $http_host; \
             proxy_buffering off; }}"
        )
    };
    format!(
        "worker_processes 1;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n\
           fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
           upstream tls_up {{ server 127.0.0.1:{tls_upstream}; keepalive 8; }}\n\
           upstream plain_up {{ server 127.0.0.1:{plain_upstream}; keepalive 8; }}\n\
           server {{ listen 127.0.0.1:{tls_port} ssl; ssl_certificate {cert}; \
             ssl_certificate_key {key}; {tls_loc} }}\n\
           server {{ listen 127.0.0.1:{plain_port}; {plain_loc} }}\n\
         }}\n",
        cert = cert.cert.display(),
        key = cert.key.display(),
        tls_loc = location("tls_up", "https"),
        plain_loc = location("plain_up", "http"),
    )
}

impl Nginx {
    /// Starts nginx in `dir` in front of the TLS and plaintext servers.
    pub fn start(dir: &Path, cert: &Cert, tls_upstream: u16, plain_upstream: u16) -> Result<Nginx> {
        if !Path::new(NGINX).exists() {
            bail!("bench: {NGINX} is missing: run `cargo xtask setup` (installs Debian's nginx)");
        }
        let (tls_port, plain_port) = (free_port()?, free_port()?);
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            config(
                dir,
                cert,
                [tls_port, plain_port, tls_upstream, plain_upstream],
            ),
        )?;
        let child = Command::new(NGINX)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("bench: starting nginx")?;
        let guard = Guard::term(child);
        wait_listening("nginx listening (TLS)", tls_port)?;
        wait_listening("nginx listening (plaintext)", plain_port)?;
        Ok(Nginx {
            _guard: guard,
            tls_port,
            plain_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_one_worker_and_keep_alive_upstreams_for_both_hops() {
        let cert = Cert {
            cert: "/c.pem".into(),
            key: "/k.pem".into(),
        };
        let c = config(Path::new("/tmp/x"), &cert, [1, 2, 3, 4]);
        assert!(c.contains("worker_processes 1;"));
        assert!(c.contains("listen 127.0.0.1:1 ssl;"));
        assert!(c.contains("listen 127.0.0.1:2;"));
        assert!(c.contains("server 127.0.0.1:3; keepalive 8;"));
        assert!(c.contains("server 127.0.0.1:4; keepalive 8;"));
        assert!(c.contains("proxy_pass https://tls_up;"));
        assert!(c.contains("proxy_pass http://plain_up;"));
    }
}
