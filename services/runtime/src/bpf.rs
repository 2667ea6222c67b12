//! The device cgroup on cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program,
//! compiled from the container's rules and attached to its cgroup.
//!
//! cgroup v2 has no `devices.allow`; the kernel instead runs the programs
//! attached to a cgroup (and its ancestors) on every open and mknod of a
//! device node, with `(access << 16 | type, major, minor)` as the context, and
//! refuses the access when one returns 0. The program checks the rules from the
//! last to the first and answers with the first that matches, so a later rule
//! overrides an earlier one as on v1 (the deny-all every container starts
//! with is the last checked); nothing matching means no.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use berth_core::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 is the context; the prelude leaves the type in r2, the access
// in r3, the major in r4 and the minor in r5; r0 is the answer.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// The context's access bits and types (linux/bpf.h, BPF_DEVCG_*).
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// The program for `rules` (in the order the spec gives them).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0), // r2 = ctx->access_type
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0), // r3 = ctx->access_type >> 16
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0), // r4 = ctx->major
        insn(LDX_MEM_W, 5, 1, 8, 0), // r5 = ctx->minor
    ];
    for rule in rules.iter().rev() {
        let mut checks: Vec<Insn> = Vec::new();
        match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => checks.push(insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)),
            LinuxDeviceType::C | LinuxDeviceType::U => checks.push(insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR)),
            // A FIFO is no device the cgroup governs: the rule matches nothing.
            LinuxDeviceType::P => continue,
        }
        let mut access = 0;
        for c in rule.access().as_deref().unwrap_or("rwm").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(Error::invalid(format!("invalid device access {c:?} in rule {rule}"))),
            };
        }
        if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Matches when the access asked for is within the rule's.
            checks.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            checks.push(insn(ALU32_AND_K, 1, 0, 0, access));
            checks.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        for (reg, number) in [(4, rule.major()), (5, rule.minor())] {
            if let Some(n) = number {
                let n =
                    i32::try_from(n).map_err(|_| Error::invalid(format!("device number out of range in {rule}")))?;
                checks.push(insn(JMP_JNE_K, reg, 0, 0, n));
            }
        }
        if checks.is_empty() {
            // The rule matches every access: it answers, and nothing after it
            // could run (the verifier refuses unreachable instructions).
            prog.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
            prog.push(insn(EXIT, 0, 0, 0, 0));
            return Ok(prog);
        }
        // Each failed check jumps past this rule's answer.
        let len = checks.len() + 2;
        for (i, c) in checks.iter_mut().enumerate() {
            if matches!(c.code, JMP_JNE_K | JMP_JNE_X) {
                c.off = (len - i - 1) as i16;
            }
        }
        prog.extend(checks);
        prog.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        prog.push(insn(EXIT, 0, 0, 0, 0));
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    Ok(prog)
}

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the kernel reads the
/// fields it knows up to the size given and takes the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads the program for `rules` and attaches it to the cgroup directory
/// `cgroup`. The attachment keeps the program alive with the cgroup.
pub fn attach(cgroup: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = program(rules)?;
    let license = c"Apache";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    // Loaded without a verifier log (a log too small for what the verifier
    // writes fails the load with ENOSPC); only a failed load is loaded again
    // with a large log, to say why.
    let load = |log: &mut Vec<u8>| -> libc::c_long {
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
            prog_name: name,
            ..Default::default()
        };
        // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` and the instructions and
        // license it points to, and writes at most `log_size` bytes into `log`;
        // all of them outlive the call. On success it returns a new descriptor
        // the caller owns.
        unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, size_of::<ProgLoad>() as u32) }
    };
    let fd = load(&mut Vec::new());
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let mut log = vec![0u8; 1 << 20];
        let _ = load(&mut log);
        let verifier = String::from_utf8_lossy(log.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
        let tail: String = verifier.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(Error::internal(format!("load the device cgroup program: {err} {tail}")));
    }
    // SAFETY: a descriptor the kernel just returned, not owned elsewhere.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir =
        std::fs::File::open(cgroup).map_err(|e| Error::internal(format!("open cgroup {}: {e}", cgroup.display())))?;
    let attach = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) only reads `attach`, which outlives the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttach, size_of::<ProgAttach>() as u32)
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        return Err(Error::internal(format!("attach the device program to {}: {err}", cgroup.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &[(bool, &str)]) -> Vec<LinuxDeviceCgroup> {
        text.iter()
            .map(|(allow, t)| {
                let mut r = crate::devices::parse_cgroup_rule(t).expect("rule");
                r.set_allow(*allow);
                r
            })
            .collect()
    }

    /// Runs a program as the kernel would on one access: a tiny interpreter of
    /// the instructions [`program`] emits.
    fn run(prog: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                EXIT => return r[0] as i64,
                other => panic!("unknown opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_win_and_nothing_matching_is_refused() {
        let prog =
            program(&rules(&[(false, "a *:* rwm"), (true, "c 1:3 rwm"), (true, "b *:* m"), (true, "c 136:* rw")]))
                .expect("program");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 1, "/dev/null");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 5), 0, "/dev/zero is not allowed here");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "mknod of a disk");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 0, "reading a disk");
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 136, 7), 1, "a pseudo-terminal");
        assert_eq!(run(&prog, DEV_CHAR, ACC_MKNOD, 136, 7), 0, "rw, not m");
        // Without rules, nothing; a later deny overrides an earlier allow.
        assert_eq!(run(&program(&[]).expect("empty"), DEV_CHAR, ACC_READ, 1, 3), 0);
        let prog = program(&rules(&[(true, "a *:* rwm"), (false, "c 1:3 w")])).expect("program");
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 1);
    }

    /// Where the host mounts cgroup2, if anywhere.
    fn cgroup2_mount() -> Option<std::path::PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
    }

    #[test]
    fn the_kernel_enforces_the_program_on_a_cgroup() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let Some(root) = cgroup2_mount() else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let dir = root.join(format!("berth-bpf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("make a cgroup");
        struct Remove(std::path::PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _cleanup = Remove(dir.clone());
        // The default rule set plus more, so the program is as long as a real one.
        let set = [
            (false, "a *:* rwm"),
            (true, "c *:* m"),
            (true, "b *:* m"),
            (true, "c 1:8 rwm"),
            (true, "c 1:7 rwm"),
            (true, "c 5:0 rwm"),
            (true, "c 1:9 rwm"),
            (true, "c 5:1 rwm"),
            (true, "c 5:2 rwm"),
            (true, "c 10:200 rwm"),
            (true, "c 136:* rwm"),
            (true, "b 7:0 r"),
            (true, "b 7:1 rw"),
            (true, "c 1:3 rwm"),
        ];
        attach(&dir, &rules(&set)).expect("attach");
        // A shell that moves itself into the cgroup, then tries two devices.
        let script = format!(
            "echo $$ > {}/cgroup.procs && head -c1 /dev/null && echo null-ok; \
             head -c1 /dev/zero >/dev/null 2>&1 && echo zero-ok; \
             mknod {}/node c 1 5 && echo mknod-ok; rm -f {}/node",
            dir.display(),
            std::env::temp_dir().display(),
            std::env::temp_dir().display()
        );
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("sh");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("null-ok"), "/dev/null is allowed: {text}");
        assert!(!text.contains("zero-ok"), "/dev/zero is refused: {text}");
        assert!(text.contains("mknod-ok"), "mknod is allowed: {text}");
    }
}
