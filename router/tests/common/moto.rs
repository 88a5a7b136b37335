//! moto's S3 server (PyPI `moto[server]`) answering one request at a time
//! (`tools/s3/serial_moto.py`: S3's conditional writes are atomic, moto's threaded server's
//! are not), on a free port, with `router/tests/s3_tool.py` (boto3) to look into it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3_tool.py");
const SERIAL_MOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/s3/serial_moto.py");

/// The server, with `bucket` made; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start(bucket: &str) -> Self {
        let port = super::free_listen()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Self::start_on(port, bucket)
    }

    /// On `port` (a restart keeps the address; moto keeps nothing).
    pub fn start_on(port: u16, bucket: &str) -> Self {
        let child = Command::new("python3")
            .args([SERIAL_MOTO, "127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut m = Self { child, port };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                m.child.try_wait().unwrap().is_none(),
                "moto's server exited at start: run `python3 -m pip install -r tools/sdk/requirements.txt` (tools/test-all does)"
            );
            assert!(Instant::now() < until, "moto's server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        m.tool(&["mb", bucket]);
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS environment a client of this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// Runs `s3_tool.py COMMAND ENDPOINT ARGS…`; its output.
    pub fn tool(&self, args: &[&str]) -> String {
        s3_tool(&self.endpoint(), args)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `s3_tool.py COMMAND ENDPOINT ARGS…` (botocore, an S3 client we did not write)
/// against the S3 server at `endpoint`; its output. Panics with its stderr on failure.
pub fn s3_tool(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(TOOL)
        .arg(args[0])
        .arg(endpoint)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "s3_tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
