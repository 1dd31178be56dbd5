// What the kernel will make of a file handed to execve, decided from its first bytes the way
// Linux decides it (fs/binfmt_elf.c, fs/binfmt_script.c). process.execve cannot fail
// gracefully: Node aborts the process when execve returns. So every reason the kernel would
// refuse a file that exists and is executable is found here first: ENOEXEC (neither ELF nor
// "#!", an ELF file that is not a program, a binary for another CPU) and ENOENT from a missing
// interpreter (a "#!" line naming nothing installed, or a glibc binary on a musl image).

import { closeSync, openSync, readdirSync, readSync } from 'node:fs';

/** The kernel reads this much of a file to recognise it (BINPRM_BUF_SIZE, Linux >= 5.1). */
export const HEAD_BYTES = 256;

export type Image =
  /** An ELF program. `interpreter` is its PT_INTERP loader (absent for static binaries). */
  | { readonly kind: 'elf'; readonly interpreter: string | undefined }
  /** An ELF file the kernel refuses with ENOEXEC; `reason` says why, for a person. */
  | { readonly kind: 'bad-elf'; readonly reason: string }
  /** A "#!" script: the kernel runs `interpreter [arg] file args...`. */
  | { readonly kind: 'script'; readonly interpreter: string; readonly arg: string | undefined }
  /** Neither: execve fails with ENOEXEC. `binary` when it does not look like text. */
  | { readonly kind: 'unknown'; readonly binary: boolean };

/** Reads the start of `file` and classifies it. Open and read errors are thrown as they are. */
export function inspectImage(file: string): Image {
  const fd = openSync(file, 'r');
  try {
    // The kernel's buffer is zero-filled past the end of a short file: NULs end the "#!" line.
    const head = Buffer.alloc(HEAD_BYTES);
    const length = readSync(fd, head, 0, HEAD_BYTES, 0);
    if (length >= 4 && head[0] === 0x7f && head.toString('latin1', 1, 4) === 'ELF') return inspectElf(fd, head);
    if (length >= 2 && head[0] === 0x23 && head[1] === 0x21) {
      const shebang = parseShebang(head);
      if (shebang !== undefined) return { kind: 'script', ...shebang };
    }
    return { kind: 'unknown', binary: looksBinary(head.subarray(0, length)) };
  } finally {
    closeSync(fd);
  }
}

/**
 * Splits a "#!" line as fs/binfmt_script.c does: the interpreter runs up to the first space, tab
 * or NUL, and the rest of the line, trimmed, is one optional argument. A carriage return is not
 * a separator (so a CRLF script names "/bin/sh\r"). Undefined when the kernel would say ENOEXEC:
 * no interpreter name, or one cut off by the end of the buffer.
 */
export function parseShebang(head: Buffer): { interpreter: string; arg: string | undefined } | undefined {
  // A private, zero-padded copy: the kernel writes NULs into its buffer to cut the strings.
  const buf = Buffer.alloc(HEAD_BYTES);
  head.copy(buf, 0, 0, HEAD_BYTES);
  const bufEnd = HEAD_BYTES - 1;
  const isSpaceTab = (i: number) => buf[i] === 0x20 || buf[i] === 0x09;
  const nextNonSpaceTab = (first: number, last: number) => {
    for (let i = first; i <= last; i++) if (!isSpaceTab(i)) return i;
    return -1;
  };
  const nextTerminator = (first: number, last: number) => {
    for (let i = first; i <= last; i++) if (isSpaceTab(i) || buf[i] === 0) return i;
    return -1;
  };
  const cString = (from: number) => {
    const nul = buf.indexOf(0, from);
    return buf.toString('utf8', from, nul === -1 ? HEAD_BYTES : nul);
  };

  // strnchr: the first newline, but the search stops at a NUL.
  let end = -1;
  for (let i = 0; i < HEAD_BYTES && buf[i] !== 0; i++) {
    if (buf[i] === 0x0a) {
      end = i;
      break;
    }
  }
  if (end === -1) {
    const first = nextNonSpaceTab(2, bufEnd);
    if (first === -1) return undefined; // the whole buffer is spaces and tabs
    if (nextTerminator(first, bufEnd) === -1) return undefined; // the interpreter name is cut off
    end = bufEnd;
  }
  while (isSpaceTab(end - 1)) end--;
  const name = nextNonSpaceTab(2, end);
  if (name === -1 || name === end) return undefined; // no interpreter name
  const sep = nextTerminator(name, end);
  const argAt = sep !== -1 && buf[sep] !== 0 ? nextNonSpaceTab(sep, end) : -1;
  buf[end] = 0;
  if (sep !== -1) buf[sep] = 0;
  return { interpreter: cString(name), arg: argAt === -1 ? undefined : cString(argAt) };
}

function looksBinary(bytes: Buffer): boolean {
  // What shells use to refuse running a file as a script: a NUL byte near the start.
  return bytes.includes(0x00);
}

const ET_EXEC = 2;
const ET_DYN = 3;
const PT_INTERP = 3;
const PATH_MAX = 4096;

function inspectElf(fd: number, head: Buffer): Image {
  const elfClass = head[4];
  const data = head[5];
  if ((elfClass !== 1 && elfClass !== 2) || (data !== 1 && data !== 2)) {
    return { kind: 'bad-elf', reason: 'it has a corrupt ELF header' };
  }
  const wide = elfClass === 2;
  const little = data === 1;
  const u16 = (b: Buffer, at: number) => (little ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const u32 = (b: Buffer, at: number) => (little ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const word = (b: Buffer, at: number) =>
    wide ? Number(little ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at)) : u32(b, at);

  const type = u16(head, 16);
  if (type !== ET_EXEC && type !== ET_DYN) {
    const what = type === 1 ? 'an object file (.o)' : type === 4 ? 'a core dump' : `an ELF file of type ${type}`;
    return { kind: 'bad-elf', reason: `it is ${what}, not a program` };
  }
  const machine = u16(head, 18);
  const mismatch = architectureMismatch(machine, wide);
  if (mismatch !== undefined) return { kind: 'bad-elf', reason: mismatch };

  const phoff = word(head, wide ? 0x20 : 0x1c);
  const phentsize = u16(head, wide ? 0x36 : 0x2a);
  const phnum = u16(head, wide ? 0x38 : 0x2c);
  const expected = wide ? 56 : 32;
  const tableBytes = phentsize * phnum;
  if (phentsize !== expected || phnum === 0 || tableBytes > 65536) {
    return { kind: 'bad-elf', reason: 'it has a corrupt ELF program header table' };
  }
  const table = Buffer.alloc(tableBytes);
  if (readSync(fd, table, 0, tableBytes, phoff) !== tableBytes) {
    return { kind: 'bad-elf', reason: 'it is a truncated ELF file' };
  }
  for (let i = 0; i < phnum; i++) {
    const entry = table.subarray(i * phentsize, (i + 1) * phentsize);
    if (u32(entry, 0) !== PT_INTERP) continue;
    const offset = word(entry, wide ? 8 : 4);
    const size = word(entry, wide ? 32 : 16);
    if (size < 2 || size > PATH_MAX) return { kind: 'bad-elf', reason: 'it names a corrupt ELF interpreter' };
    const name = Buffer.alloc(size);
    if (readSync(fd, name, 0, size, offset) !== size || name[size - 1] !== 0) {
      return { kind: 'bad-elf', reason: 'it names a corrupt ELF interpreter' };
    }
    return { kind: 'elf', interpreter: name.toString('utf8', 0, name.indexOf(0)) };
  }
  return { kind: 'elf', interpreter: undefined };
}

/** e_machine values this machine's kernel runs natively (including its 32-bit compat ABI). */
const NATIVE_MACHINES: Readonly<Record<string, readonly number[]>> = {
  x64: [62, 3],
  ia32: [3],
  arm64: [183, 40],
  arm: [40],
  ppc64: [21],
  ppc: [20],
  s390x: [22],
  s390: [22],
  riscv64: [243],
  loong64: [258],
  mips: [8],
  mipsel: [8],
  mips64: [8],
  mips64el: [8],
};

const MACHINE_NAMES: Readonly<Record<number, string>> = {
  3: 'x86 (32-bit)',
  8: 'MIPS',
  20: 'PowerPC (32-bit)',
  21: 'PowerPC 64',
  22: 'IBM Z (s390x)',
  40: 'ARM (32-bit)',
  62: 'x86-64 (amd64)',
  183: 'ARM64 (aarch64)',
  243: 'RISC-V',
  258: 'LoongArch',
};

const ARCH_NAMES: Readonly<Record<string, string>> = { x64: 'x86-64 (amd64)', arm64: 'ARM64 (aarch64)' };

function architectureMismatch(machine: number, _wide: boolean): string | undefined {
  const native = NATIVE_MACHINES[process.arch];
  if (native === undefined || native.includes(machine)) return undefined;
  // binfmt_misc (e.g. qemu-user) may run foreign binaries; if any handler is visible, let the
  // kernel decide rather than refuse a binary that would have run.
  if (hasBinfmtHandlers()) return undefined;
  const theirs = MACHINE_NAMES[machine] ?? `machine type ${machine}`;
  const ours = ARCH_NAMES[process.arch] ?? process.arch;
  return `it is a program for ${theirs}, but this machine is ${ours}`;
}

let binfmtHandlers: boolean | undefined;

function hasBinfmtHandlers(): boolean {
  if (binfmtHandlers === undefined) {
    try {
      binfmtHandlers = readdirSync('/proc/sys/fs/binfmt_misc').some((n) => n !== 'register' && n !== 'status');
    } catch {
      binfmtHandlers = false;
    }
  }
  return binfmtHandlers;
}
