//! Why a TLS handshake failed, in words an operator acts on, and a short label for the
//! `tls_handshake_failures_total{reason}` metric. rustls's own texts name the TLS mechanism
//! ("invalid peer certificate: UnknownIssuer"); these name the setting or the certificate.

use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible};

/// A failed handshake: a metric label and the sentence logged and (where the protocol
/// allows) sent to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// One of a fixed set (`no_client_cert`, `unknown_ca`, `expired`, `bad_signature`,
    /// `wrong_name`, `rejected_by_peer`, `incompatible`, `not_tls`, `timeout`, `closed`,
    /// `too_large`, `protocol`, `other`): bounded metric cardinality.
    pub label: &'static str,
    pub text: String,
}

impl Failure {
    pub fn new(label: &'static str, text: impl Into<String>) -> Failure {
        Failure {
            label,
            text: text.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The failure a rustls error stands for.
pub fn failure(error: &Error) -> Failure {
    match error {
        Error::NoCertificatesPresented => Failure::new(
            "no_client_cert",
            "the peer sent no certificate, and one is required (NoCertificatesPresented)",
        ),
        Error::InvalidCertificate(cert) => certificate_failure(cert),
        Error::AlertReceived(alert) => alert_failure(*alert),
        Error::PeerIncompatible(
            why @ (PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls12NotOffered),
        ) => Failure::new(
            "incompatible",
            format!(
                "no TLS version in common: the peer does not offer TLS 1.3, and TLS 1.2 is \
                 accepted only by client listeners set to tls_min_version = \"1.2\" ({why:?})"
            ),
        ),
        Error::PeerIncompatible(why) => Failure::new(
            "incompatible",
            format!(
                "no TLS version or cipher suite in common (the relay speaks TLS 1.3, and 1.2 \
                 where tls_min_version = \"1.2\"): {why:?}"
            ),
        ),
        Error::InvalidMessage(why) => {
            Failure::new("protocol", format!("malformed TLS message: {why:?}"))
        }
        other => Failure::new("other", other.to_string()),
    }
}

fn certificate_failure(error: &CertificateError) -> Failure {
    match error {
        CertificateError::UnknownIssuer => Failure::new(
            "unknown_ca",
            "the peer's certificate is not issued by a CA this side trusts (UnknownIssuer)",
        ),
        CertificateError::Expired => {
            Failure::new("expired", "the peer's certificate has expired (Expired)")
        }
        CertificateError::ExpiredContext { not_after, .. } => Failure::new(
            "expired",
            format!(
                "the peer's certificate expired at {} (seconds since the epoch; Expired)",
                not_after.as_secs()
            ),
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Failure::new("expired", "the peer's certificate is not valid yet (clock?)")
        }
        CertificateError::BadSignature => Failure::new(
            "bad_signature",
            "the peer's certificate does not verify with the CA's key (a CA of the same name, reissued?; BadSignature)",
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Failure::new(
                "wrong_name",
                format!("the peer's certificate does not name the host dialed: {error:?}"),
            )
        }
        other => Failure::new(
            "bad_certificate",
            format!("the peer's certificate is refused: {other:?}"),
        ),
    }
}

fn alert_failure(alert: AlertDescription) -> Failure {
    let text = match alert {
        AlertDescription::UnknownCA => {
            "the peer does not trust our certificate (it is not from the peer's CA)"
        }
        AlertDescription::CertificateExpired => "the peer says our certificate has expired",
        AlertDescription::CertificateRequired => {
            "the peer requires a certificate and we presented none"
        }
        AlertDescription::BadCertificate | AlertDescription::DecryptError => {
            "the peer refused our certificate (wrong key?)"
        }
        AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure => {
            "the peer has no TLS version or cipher suite in common with us (TLS 1.3, or 1.2 where \
             tls_min_version = \"1.2\")"
        }
        _ => return Failure::new("rejected_by_peer", format!("the peer sent alert {alert:?}")),
    };
    Failure::new("rejected_by_peer", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_own_label() {
        let cases = [
            (Error::NoCertificatesPresented, "no_client_cert"),
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "unknown_ca",
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                "expired",
            ),
            (
                Error::InvalidCertificate(CertificateError::BadSignature),
                "bad_signature",
            ),
            (
                Error::AlertReceived(AlertDescription::UnknownCA),
                "rejected_by_peer",
            ),
            (Error::General("x".into()), "other"),
        ];
        for (error, label) in cases {
            assert_eq!(failure(&error).label, label, "{error}");
        }
    }
}
