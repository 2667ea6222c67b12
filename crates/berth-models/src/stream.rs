//! Docker's stream framing, written in one place for the whole of Berth: the
//! 8-byte header (stream, 0, 0, 0, big-endian payload length) that multiplexes
//! stdout and stderr on attach, exec and logs, and that the shim's control
//! socket also speaks (with two kinds of its own: an exec's exit code and the
//! end of stdin).

/// Input for the process's stdin.
pub const STDIN: u8 = 0;
/// The process's stdout (everything, with a TTY).
pub const STDOUT: u8 = 1;
/// The process's stderr.
pub const STDERR: u8 = 2;
/// An exec's exit code, as decimal text; the last frame of an exec stream.
pub const EXIT: u8 = 0x10;
/// Close the process's stdin (after what was sent before).
pub const CLOSE_STDIN: u8 = 0x11;
/// The length of a frame header.
pub const HEADER: usize = 8;
/// The largest payload of one frame.
pub const MAX_FRAME: usize = 1 << 20;

/// The header of a frame of `kind` with `len` payload bytes.
pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
    let n = (len as u32).to_be_bytes();
    [kind, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// Splits the first whole frame off `buf`: `Some((kind, payload))`, or
/// `None` until a whole frame has arrived. A payload over [`MAX_FRAME`] is an error.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes is too large"));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    let kind = buf[0];
    let payload = buf[HEADER..HEADER + len].to_vec();
    buf.drain(..HEADER + len);
    Ok(Some((kind, payload)))
}

/// Appends one frame of `kind` carrying `payload` to `out`.
pub fn put_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&header(kind, payload.len()));
    out.extend_from_slice(payload);
}

/// Writes the length into a frame header that starts at `at` in `out`, once the
/// frame's payload (everything after the header) has been appended.
pub fn close_frame(out: &mut [u8], at: usize) {
    let len = (out.len() - at - HEADER) as u32;
    out[at + 4..at + HEADER].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_whole_frames() {
        let mut buf = header(STDOUT, 3).to_vec();
        buf.extend_from_slice(b"ab");
        assert_eq!(take_frame(&mut buf), Ok(None));
        buf.push(b'c');
        buf.extend_from_slice(&header(CLOSE_STDIN, 0));
        assert_eq!(take_frame(&mut buf), Ok(Some((STDOUT, b"abc".to_vec()))));
        assert_eq!(take_frame(&mut buf), Ok(Some((CLOSE_STDIN, Vec::new()))));
        assert!(buf.is_empty());
        let mut big = header(STDIN, MAX_FRAME + 1).to_vec();
        assert!(take_frame(&mut big).is_err());
    }
}
