//! Servers nobody here wrote, started on free loopback ports for the
//! conformance suite: [`Nginx`] (Debian's package) and [`Httpbin`] (PyPI, in
//! the virtualenv `scripts/test.sh` creates).
//!
//! Each server is a child process that lives as long as its handle: dropping
//! the handle kills it. Start-up waits until the port accepts connections,
//! bounded at 30 s, and panics with what to install when the server is
//! missing, so a machine without them fails loudly instead of skipping.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A free port on 127.0.0.1, as the OS hands it out.
///
/// # Panics
///
/// If no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh directory under the system's temp dir, unique to this process.
fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "palisade-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Waits (on the wall clock: these are real processes) until `port`
/// accepts a connection, or the child exits.
fn wait_for_port(child: &mut Child, port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..300 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened on {port}: {status}");
        }
        // A blocking wait for a child process to bind; no tokio runtime is
        // involved, and no test's timing depends on it.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// A throw-away certificate authority and a leaf for `localhost` and
/// `127.0.0.1`, for servers that speak TLS.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// The server's certificate, PEM.
    pub cert_pem: String,
    /// The server's private key, PEM.
    pub key_pem: String,
}

impl TestCa {
    /// A new CA and a leaf it signed.
    ///
    /// # Panics
    ///
    /// If rcgen cannot make the keys (it does not fail on valid input).
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "palisade conformance CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, ca_key).expect("a self-signed CA");
        let leaf_key = KeyPair::generate().expect("a leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("a signed leaf");
        Self {
            ca_pem: issuer.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// How to start an [`Nginx`].
#[derive(Debug, Clone, Default)]
pub struct NginxConfig {
    echo: bool,
    http: String,
    server: String,
    tls: bool,
    http2: bool,
}

impl NginxConfig {
    /// Directives inside the `http { }` block (`limit_req_zone ...;`,
    /// `keepalive_requests 7;`).
    pub fn http(mut self, directives: &str) -> Self {
        self.http.push_str(directives);
        self.http.push('\n');
        self
    }

    /// Directives inside the `server { }` block: `location`s and the like.
    /// The document root is [`Nginx::root`].
    pub fn server(mut self, directives: &str) -> Self {
        self.server.push_str(directives);
        self.server.push('\n');
        self
    }

    /// Loads the echo module (Debian's `libnginx-mod-http-echo`), for
    /// `echo_sleep`, `echo_status` and `echo` in locations: a slow redirect,
    /// a slow body.
    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Also listens with TLS, on [`Nginx::tls_port`], with a certificate
    /// from a throw-away [`TestCa`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Offers HTTP/2 on the TLS port (ALPN `h2`); implies [`tls`](Self::tls).
    pub fn http2(mut self) -> Self {
        self.tls = true;
        self.http2 = true;
        self
    }

    /// Starts nginx with this configuration.
    ///
    /// # Panics
    ///
    /// If nginx is not installed (`scripts/test.sh` installs it) or does
    /// not start.
    pub fn start(self) -> Nginx {
        Nginx::start_with(self)
    }
}

/// nginx (Debian's package) on free loopback ports, stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    port: u16,
    tls_port: Option<u16>,
    dir: PathBuf,
    ca: Option<TestCa>,
}

impl Nginx {
    /// A configuration to start from.
    pub fn config() -> NginxConfig {
        NginxConfig::default()
    }

    fn binary() -> PathBuf {
        for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
            if Path::new(p).exists() {
                return PathBuf::from(p);
            }
        }
        panic!("nginx is not installed: run ./scripts/test.sh, which installs it with apt-get");
    }

    fn start_with(cfg: NginxConfig) -> Self {
        let dir = scratch_dir("nginx");
        let root = dir.join("www");
        std::fs::create_dir_all(&root).expect("the document root");
        let port = free_port();
        let mut listen = format!("listen 127.0.0.1:{port};\n");
        let mut ca = None;
        let mut tls_port = None;
        if cfg.tls {
            let p = free_port();
            let c = TestCa::new();
            std::fs::write(dir.join("cert.pem"), &c.cert_pem).expect("cert");
            std::fs::write(dir.join("key.pem"), &c.key_pem).expect("key");
            let h2 = if cfg.http2 { " http2" } else { "" };
            listen.push_str(&format!(
                "listen 127.0.0.1:{p} ssl{h2};\n\
                 ssl_certificate {d}/cert.pem;\n\
                 ssl_certificate_key {d}/key.pem;\n",
                d = dir.display()
            ));
            ca = Some(c);
            tls_port = Some(p);
        }
        let d = dir.display();
        let modules = if cfg.echo {
            "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;\n"
        } else {
            ""
        };
        let conf = format!(
            "{modules}\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               log_format palisade '$host $request_method $uri $status \
                 auth=$http_authorization key=$http_x_api_key ae=$http_accept_encoding \
                 len=$content_length';\n\
               access_log {d}/access.log palisade;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               default_type application/octet-stream;\n\
               {http}\n\
               server {{\n\
                 {listen}\n\
                 server_name localhost;\n\
                 root {root};\n\
                 {server}\n\
               }}\n\
             }}\n",
            http = cfg.http,
            server = cfg.server,
            root = root.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let mut child = Command::new(Self::binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        wait_for_port(&mut child, port, "nginx");
        if let Some(p) = tls_port {
            wait_for_port(&mut child, p, "nginx (TLS)");
        }
        Self {
            child,
            port,
            tls_port,
            dir,
            ca,
        }
    }

    /// The plain-HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, when started with [`NginxConfig::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `https://localhost:<tls port><path>`.
    ///
    /// # Panics
    ///
    /// If nginx was started without TLS.
    pub fn tls_url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.tls_port.expect("nginx was started with TLS")
        )
    }

    /// The throw-away CA that signed the TLS certificate.
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// The document root: files written here are served.
    pub fn root(&self) -> PathBuf {
        self.dir.join("www")
    }

    /// Writes `bytes` to `path` under the document root.
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn write_file(&self, path: &str, bytes: &[u8]) {
        let p = self.root().join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("a directory under the root");
        }
        let mut f = std::fs::File::create(p).expect("a file under the root");
        f.write_all(bytes).expect("written");
    }

    /// The access log so far, one line per request nginx answered:
    /// `<host> <method> <uri> <status> auth=<Authorization> key=<X-Api-Key>
    /// ae=<Accept-Encoding> len=<Content-Length>`, `-` for an absent header.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// httpbin (PyPI) under gunicorn on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct Httpbin {
    child: Child,
    port: u16,
}

impl Httpbin {
    /// The virtualenv with httpbin and gunicorn: `$PALISADE_CONFORMANCE_VENV`,
    /// else `target/conformance-venv` as `scripts/test.sh` creates it.
    pub fn venv() -> PathBuf {
        std::env::var_os("PALISADE_CONFORMANCE_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join("target")
                    .join("conformance-venv")
            })
    }

    /// Starts httpbin with 16 threads, so `/delay` and `/drip` do not hold
    /// up other requests.
    ///
    /// # Panics
    ///
    /// If the virtualenv is missing (`scripts/test.sh` creates it) or
    /// httpbin does not start.
    pub fn start() -> Self {
        let gunicorn = Self::venv().join("bin").join("gunicorn");
        assert!(
            gunicorn.exists(),
            "httpbin is not installed at {}: run ./scripts/test.sh, which creates the \
             virtualenv with pip",
            gunicorn.display()
        );
        let port = free_port();
        let mut child = Command::new(gunicorn)
            .args(["--threads", "16", "--worker-class", "gthread", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("httpbin:app")
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gunicorn starts");
        wait_for_port(&mut child, port, "httpbin");
        Self { child, port }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Httpbin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
