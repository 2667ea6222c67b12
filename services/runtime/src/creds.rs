//! Acting as a container's root on this thread: the file-system IDs of the
//! host user it is (`--userns-remap`), keeping the runtime's capabilities.
//! Files written into a running remapped container go through its idmapped
//! layers, which take only IDs of its range (host root's would be refused).

use berth_core::{Error, Result};

/// While it lives, this thread's file-system user and group are another's;
/// dropped, they are root's again (and the file capabilities with them).
pub struct ActingAs(());

impl ActingAs {
    /// Acts as `uid`/`gid` on this thread.
    pub fn new(uid: u32, gid: u32) -> Result<ActingAs> {
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
        let guard = ActingAs(());
        // A file-system user other than 0 loses the file capabilities
        // (CHOWN, DAC_OVERRIDE, FOWNER, MKNOD, ...) from the effective set;
        // they are still permitted, so they are made effective again.
        raise_effective().map_err(|e| Error::internal(format!("raise capabilities: {e}")))?;
        Ok(guard)
    }
}

impl Drop for ActingAs {
    fn drop(&mut self) {
        // Back to 0: the kernel makes the permitted file capabilities effective again.
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Makes this thread's permitted capabilities effective (capget, capset;
/// `pid` 0 is the calling thread).
fn raise_effective() -> std::io::Result<()> {
    // _LINUX_CAPABILITY_VERSION_3: two data entries, the low and high 32 bits.
    let mut header = CapHeader { version: 0x2008_0522, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: the header and the two-entry array are the layout capget(2)
    // fills for version 3, and both outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: as above; capset(2) only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
