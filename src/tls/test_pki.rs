//! Certificates for tests, made with rcgen at run time (nothing secret is checked in): a CA,
//! a second CA that nobody trusts, a server certificate for `localhost` and `127.0.0.1`, a
//! client certificate, an expired one, and one from the other CA. Built for the library's
//! tests and, with the `test-pki` feature, for the CLI's socket tests.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::path::PathBuf;

/// A leaf certificate and its key, in PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

struct Authority {
    cert: Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().expect("rcgen cannot fail to make a key");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("no names cannot be invalid names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params
            .self_signed(&key)
            .expect("rcgen cannot fail to sign with its own key");
        Authority { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid for both server and client use,
    /// from `not_before` to `not_after` (years).
    fn issue(&self, names: &[&str], valid_years: Option<(i32, i32)>) -> Leaf {
        let key = KeyPair::generate().expect("rcgen cannot fail to make a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params =
            CertificateParams::new(names.clone()).expect("test names are never invalid");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some((from, to)) = valid_years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("rcgen cannot fail to sign with a CA it made");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// One test's certificates.
pub struct Pki {
    ca: Authority,
    /// The CA's certificate (what `tls_ca_file` holds).
    pub ca_pem: String,
    /// Another CA's certificate: nothing here trusts it.
    pub other_ca_pem: String,
    /// For `localhost` and `127.0.0.1`.
    pub server: Leaf,
    /// A client's (or a node's) certificate from the CA.
    pub client: Leaf,
    /// From the CA, but expired in 2021.
    pub expired: Leaf,
    /// From the other CA.
    pub foreign: Leaf,
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Authority::new("ringrelay test CA");
        let other = Authority::new("some other CA");
        let server = ca.issue(&["localhost", "127.0.0.1"], None);
        let client = ca.issue(&["client-1"], None);
        let expired = ca.issue(&["client-old"], Some((2020, 2021)));
        let foreign = other.issue(&["client-foreign", "127.0.0.1"], None);
        Pki {
            ca_pem: ca.cert.pem(),
            other_ca_pem: other.cert.pem(),
            ca,
            server,
            client,
            expired,
            foreign,
        }
    }

    /// A further leaf from the CA, for `names` (a node's advertise host, for example).
    pub fn issue(&self, names: &[&str]) -> Leaf {
        self.ca.issue(names, None)
    }

    /// Writes every PEM to a new directory under the temp dir (`ca.pem`, `other-ca.pem`,
    /// `server.pem`/`server.key`, `client.*`, `expired.*`, `foreign.*`) and returns it. The
    /// keys are written with mode 0600, as an operator would.
    pub fn write_to_temp_dir(&self, tag: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir().join(format!(
            "ringrelay-pki-{tag}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("the temp dir is never read-only in tests");
        let write = |name: &str, text: &str, mode: u32| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(dir.join(name))
                .expect("a new file in the test's own directory cannot fail");
            std::io::Write::write_all(&mut file, text.as_bytes())
                .expect("writing a small file to the temp dir cannot fail");
        };
        write("ca.pem", &self.ca_pem, 0o644);
        write("other-ca.pem", &self.other_ca_pem, 0o644);
        for (name, leaf) in [
            ("server", &self.server),
            ("client", &self.client),
            ("expired", &self.expired),
            ("foreign", &self.foreign),
        ] {
            write(&format!("{name}.pem"), &leaf.cert_pem, 0o644);
            write(&format!("{name}.key"), &leaf.key_pem, 0o600);
        }
        dir
    }
}

static NEXT_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Pki {
    /// A rustls client configuration that trusts the CA and speaks only TLS 1.2 with `suite`
    /// (a client that cannot speak 1.3). Secrets are extractable, so ringrelay's client can
    /// run it, and a test can forge its records.
    pub fn tls12_only_client(
        &self,
        suite: rustls::CipherSuite,
    ) -> std::sync::Arc<rustls::ClientConfig> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.retain(|s| s.suite() == suite);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(cert.expect("rcgen's PEM cannot fail to parse"))
                .expect("rcgen's CA cannot be refused");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider.into())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("ring always offers TLS 1.2 suites")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.enable_secret_extraction = true;
        std::sync::Arc::new(config)
    }
}
