//! `ringrelay_status` is ABI: each value is pinned here and never renumbered, and its string
//! is its C name.

use ringrelay_ffi::status::{ringrelay_status, ringrelay_status_str};
use std::ffi::CStr;

#[test]
fn status_values_never_change() {
    let pinned: [(ringrelay_status, u32); 22] = [
        (ringrelay_status::Ok, 0),
        (ringrelay_status::InvalidArgument, 1),
        (ringrelay_status::Panic, 2),
        (ringrelay_status::InCallback, 3),
        (ringrelay_status::BufferTooSmall, 4),
        (ringrelay_status::WouldBlock, 5),
        (ringrelay_status::Timeout, 6),
        (ringrelay_status::Closed, 7),
        (ringrelay_status::Disconnected, 8),
        (ringrelay_status::ConnectFailed, 9),
        (ringrelay_status::AuthFailed, 10),
        (ringrelay_status::FrameTooLarge, 11),
        (ringrelay_status::Protocol, 12),
        (ringrelay_status::UnsupportedVersion, 13),
        (ringrelay_status::Config, 14),
        (ringrelay_status::Listen, 15),
        (ringrelay_status::IoUringUnavailable, 16),
        (ringrelay_status::Resource, 17),
        (ringrelay_status::NodeStopped, 18),
        (ringrelay_status::NodeFailed, 19),
        (ringrelay_status::BadState, 20),
        (ringrelay_status::Tls, 21),
    ];
    for (status, value) in pinned {
        assert_eq!(status as u32, value, "{status:?}");
        assert_eq!(ringrelay_status::ALL[value as usize], status);
    }
}

#[test]
fn status_str_is_the_c_name_and_unknown_values_are_named_unknown() {
    let name = |v: u32| {
        // SAFETY: ringrelay_status_str always returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(ringrelay_status_str(v)) }
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(name(0), "RINGRELAY_STATUS_OK");
    assert_eq!(name(20), "RINGRELAY_STATUS_BAD_STATE");
    assert_eq!(name(21), "RINGRELAY_STATUS_TLS");
    assert_eq!(name(22), "RINGRELAY_STATUS_UNKNOWN");
    assert_eq!(name(u32::MAX), "RINGRELAY_STATUS_UNKNOWN");
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../include/ringrelay.h"
    ))
    .unwrap();
    for status in ringrelay_status::ALL {
        let c_name = name(status as u32);
        assert!(
            header.contains(&format!("{c_name} = {},", status as u32)),
            "{c_name} is not declared with value {} in the header",
            status as u32
        );
    }
}
