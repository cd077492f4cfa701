//! Real softphones driven headless for the interop suite (`tests/tests/interop_*.rs`): baresip
//! over its `ctrl_tcp` socket, linphonec over its command pipe, and the audio checks (a tone per
//! phone as microphone, the decoded received audio analysed for the peer's tone).

pub mod audio;
pub mod baresip;
pub mod calls;
pub mod linphone;
