//! Loading a container's seccomp filter (`linux.seccomp` of its spec) with
//! libseccomp, as runc does: unknown system call names are skipped (a profile
//! names calls of every architecture and kernel), the filter covers the
//! spec's architectures, and it does not set `no_new_privs` by itself (that is
//! the container's own choice).

use berth_shim::spec::{Seccomp, SeccompArg};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map_or(libc::EPERM, |e| i32::try_from(e).unwrap_or(libc::EPERM));
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(u16::try_from(errno).unwrap_or(0)),
        other => return Err(format!("unknown seccomp action {other:?}")),
    })
}

fn arch(name: &str) -> Option<ScmpArch> {
    Some(match name {
        "SCMP_ARCH_X86_64" => ScmpArch::X8664,
        "SCMP_ARCH_X86" => ScmpArch::X86,
        "SCMP_ARCH_X32" => ScmpArch::X32,
        "SCMP_ARCH_AARCH64" => ScmpArch::Aarch64,
        "SCMP_ARCH_ARM" => ScmpArch::Arm,
        "SCMP_ARCH_RISCV64" => ScmpArch::Riscv64,
        "SCMP_ARCH_S390X" => ScmpArch::S390X,
        "SCMP_ARCH_S390" => ScmpArch::S390,
        "SCMP_ARCH_PPC64LE" => ScmpArch::Ppc64Le,
        _ => return None,
    })
}

fn compare(a: &SeccompArg) -> Result<ScmpArgCompare, String> {
    let op = match a.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(a.value),
        other => return Err(format!("unknown seccomp operator {other:?}")),
    };
    let datum = if a.op == "SCMP_CMP_MASKED_EQ" { a.value_two } else { a.value };
    Ok(ScmpArgCompare::new(a.index, op, datum))
}

/// Loads `filter` into this process (and what it executes).
pub fn load(filter: &Seccomp) -> Result<(), String> {
    fn e(what: &'static str) -> impl Fn(libseccomp::error::SeccompError) -> String {
        move |err| format!("seccomp: {what}: {err}")
    }
    let mut ctx =
        ScmpFilterContext::new(action(&filter.default_action, filter.default_errno_ret)?).map_err(e("new filter"))?;
    ctx.set_ctl_nnp(false).map_err(e("keep no_new_privs as it is"))?;
    for a in filter.architectures.iter().filter_map(|a| arch(a)) {
        if a != ScmpArch::native() {
            ctx.add_arch(a).map_err(e("add an architecture"))?;
        }
    }
    let default = action(&filter.default_action, filter.default_errno_ret)?;
    for rule in &filter.syscalls {
        let act = action(&rule.action, rule.errno_ret)?;
        if act == default {
            // libseccomp refuses a rule that repeats the default action.
            continue;
        }
        let conditions = rule.args.iter().map(compare).collect::<Result<Vec<_>, _>>()?;
        for name in &rule.names {
            let Ok(call) = ScmpSyscall::from_name(name) else { continue };
            let added = if conditions.is_empty() {
                ctx.add_rule(act, call)
            } else {
                ctx.add_rule_conditional(act, call, &conditions)
            };
            added.map_err(|err| format!("seccomp: rule for {name}: {err}"))?;
        }
    }
    ctx.load().map_err(e("load"))
}
