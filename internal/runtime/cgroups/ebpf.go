package cgroups

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cgroup v2 has no device files: a BPF_PROG_TYPE_CGROUP_DEVICE program
// attached to the cgroup decides every open and mknod of a device node. The
// program is assembled here from the rules and loaded with bpf(2) directly;
// it needs a dozen instruction forms, not an eBPF library.

// insn is one eBPF instruction.
type insn struct {
	op       uint8
	dst, src uint8
	off      int16
	imm      int32
}

// eBPF opcodes used by the device filter.
const (
	opLdxW    = 0x61 // BPF_LDX|BPF_MEM|BPF_W: dst = *(u32 *)(src + off)
	opMov32X  = 0xbc // BPF_ALU|BPF_MOV|BPF_X: dst = (u32)src
	opAnd32K  = 0x54 // BPF_ALU|BPF_AND|BPF_K: dst &= imm
	opRsh32K  = 0x74 // BPF_ALU|BPF_RSH|BPF_K: dst >>= imm
	opMov64K  = 0xb7 // BPF_ALU64|BPF_MOV|BPF_K: dst = imm
	opJneK    = 0x55 // BPF_JMP|BPF_JNE|BPF_K: if dst != imm goto pc+1+off
	opJeqK    = 0x15 // BPF_JMP|BPF_JEQ|BPF_K: if dst == imm goto pc+1+off
	opExit    = 0x95 // BPF_JMP|BPF_EXIT
	devcgBlk  = 1    // BPF_DEVCG_DEV_BLOCK
	devcgChr  = 2    // BPF_DEVCG_DEV_CHAR
	devcgMknd = 1    // BPF_DEVCG_ACC_MKNOD
	devcgRead = 2    // BPF_DEVCG_ACC_READ
	devcgWrit = 4    // BPF_DEVCG_ACC_WRITE
)

// Registers of the device filter. r1 holds the struct bpf_cgroup_dev_ctx
// { u32 access_type; u32 major; u32 minor; }, access_type being
// (access << 16) | type.
const (
	rRet, rCtx, rTmp, rType, rAcc, rMajor, rMinor, rMask = 0, 1, 2, 3, 4, 5, 6, 7
)

func accessBits(a string) int32 {
	var b int32
	for _, c := range a {
		switch c {
		case 'r':
			b |= devcgRead
		case 'w':
			b |= devcgWrit
		case 'm':
			b |= devcgMknd
		}
	}
	return b
}

// deviceFilter assembles the program for rules. The last rule that matches
// a request decides it, as when the rules are written in order to a v1
// devices cgroup; a request no rule matches is denied, as in a v1 devices
// cgroup reset to "deny all" first. An allow rule matches when it grants
// every access requested, a deny rule when it denies any of them.
func deviceFilter(rules []deviceRule) ([]insn, error) {
	prog := []insn{
		{op: opLdxW, dst: rTmp, src: rCtx, off: 0},
		{op: opMov32X, dst: rType, src: rTmp},
		{op: opAnd32K, dst: rType, imm: 0xffff},
		{op: opMov32X, dst: rAcc, src: rTmp},
		{op: opRsh32K, dst: rAcc, imm: 16},
		{op: opLdxW, dst: rMajor, src: rCtx, off: 4},
		{op: opLdxW, dst: rMinor, src: rCtx, off: 8},
	}
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		var block []insn
		var jumps []int // indexes in block of jumps to the next rule
		jumpIf := func(op uint8, reg uint8, imm int32) {
			jumps = append(jumps, len(block))
			block = append(block, insn{op: op, dst: reg, imm: imm})
		}
		switch r.typ {
		case 'c':
			jumpIf(opJneK, rType, devcgChr)
		case 'b':
			jumpIf(opJneK, rType, devcgBlk)
		}
		for _, n := range []struct {
			reg uint8
			v   int64
		}{{rMajor, r.major}, {rMinor, r.minor}} {
			if n.v == wildcard {
				continue
			}
			if n.v > math.MaxInt32 {
				return nil, fmt.Errorf("device rule %s: number %d out of range", r.v1String(), n.v)
			}
			jumpIf(opJneK, n.reg, int32(n.v))
		}
		if acc := accessBits(r.access); acc != devcgRead|devcgWrit|devcgMknd {
			block = append(block, insn{op: opMov32X, dst: rMask, src: rAcc})
			if r.allow {
				block = append(block, insn{op: opAnd32K, dst: rMask, imm: ^acc & 7})
				jumpIf(opJneK, rMask, 0)
			} else {
				block = append(block, insn{op: opAnd32K, dst: rMask, imm: acc})
				jumpIf(opJeqK, rMask, 0)
			}
		}
		ret := int32(0)
		if r.allow {
			ret = 1
		}
		block = append(block, insn{op: opMov64K, dst: rRet, imm: ret}, insn{op: opExit})
		for _, j := range jumps {
			block[j].off = int16(len(block) - j - 1)
		}
		prog = append(prog, block...)
		if len(jumps) == 0 {
			// Matches every request: earlier rules can never decide,
			// and the verifier refuses unreachable code.
			return prog, nil
		}
	}
	return append(prog, insn{op: opMov64K, dst: rRet, imm: 0}, insn{op: opExit}), nil
}

// encode lays the instructions out as the kernel reads them.
func encode(prog []insn) []byte {
	bigEndian := binary.NativeEndian.Uint16([]byte{0, 1}) == 1
	out := make([]byte, 0, 8*len(prog))
	for _, in := range prog {
		regs := in.dst&0xf | in.src<<4
		if bigEndian {
			regs = in.dst<<4 | in.src&0xf
		}
		out = append(out, in.op, regs)
		out = binary.NativeEndian.AppendUint16(out, uint16(in.off))
		out = binary.NativeEndian.AppendUint32(out, uint32(in.imm))
	}
	return out
}

func bpf(cmd uintptr, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
}

// loadDeviceFilter loads prog and returns its file descriptor; on a
// verifier refusal the error carries the verifier's log.
func loadDeviceFilter(prog []insn) (int, error) {
	code := encode(prog)
	license := []byte("Apache\x00")
	attr := progLoadAttr{
		progType:           unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:            uint32(len(prog)),
		insns:              uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		expectedAttachType: unix.BPF_CGROUP_DEVICE,
	}
	copy(attr.progName[:], "berth_devices")
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		// Once more with the verifier's log, for the message.
		log := make([]byte, 64<<10)
		attr.logLevel, attr.logSize = 1, uint32(len(log))
		attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
		if fd2, err2 := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err2 == nil {
			unix.Close(fd2)
		}
		runtime.KeepAlive(log)
		if n := clen(log); n > 0 {
			err = fmt.Errorf("%w: verifier: %s", err, log[:n])
		}
	}
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	if err != nil {
		return -1, fmt.Errorf("load device filter program: %w", err)
	}
	return fd, nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// progAttachAttr is the BPF_PROG_ATTACH/DETACH part of union bpf_attr.
type progAttachAttr struct {
	targetFd, attachBpfFd, attachType, attachFlags, replaceBpfFd uint32
}

// progQueryAttr is the BPF_PROG_QUERY part of union bpf_attr.
type progQueryAttr struct {
	targetFd, attachType, queryFlags, attachFlags uint32
	progIDs                                       uint64
	progCnt                                       uint32
	_                                             uint32
}

// attachedDeviceFilters returns the ids of the device programs attached to
// the cgroup open at cgFd.
func attachedDeviceFilters(cgFd int) ([]uint32, error) {
	ids := make([]uint32, 64)
	attr := progQueryAttr{
		targetFd:   uint32(cgFd),
		attachType: unix.BPF_CGROUP_DEVICE,
		progIDs:    uint64(uintptr(unsafe.Pointer(&ids[0]))),
		progCnt:    uint32(len(ids)),
	}
	_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(ids)
	if err != nil {
		return nil, err
	}
	return ids[:attr.progCnt], nil
}

// attachDeviceFilter replaces the device programs of the cgroup at dir by
// one made from rules. The new program is attached before the old ones go,
// so no moment passes without a filter.
func attachDeviceFilter(dir string, rules []deviceRule) error {
	prog, err := deviceFilter(rules)
	if err != nil {
		return err
	}
	progFd, err := loadDeviceFilter(prog)
	if err != nil {
		return err
	}
	defer unix.Close(progFd)
	cgFd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer unix.Close(cgFd)
	old, err := attachedDeviceFilters(cgFd)
	if err != nil {
		return fmt.Errorf("query device programs of cgroup %s: %w", dir, err)
	}
	attr := progAttachAttr{
		targetFd:    uint32(cgFd),
		attachBpfFd: uint32(progFd),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		if len(old) != 1 {
			return fmt.Errorf("attach device filter to cgroup %s: %w", dir, err)
		}
		// One program attached by someone without BPF_F_ALLOW_MULTI:
		// a plain attach replaces it.
		attr.attachFlags = 0
		if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
			return fmt.Errorf("attach device filter to cgroup %s: %w", dir, err)
		}
		return nil
	}
	for _, id := range old {
		if err := detachProgram(cgFd, id); err != nil {
			return fmt.Errorf("detach old device filter %d from cgroup %s: %w", id, dir, err)
		}
	}
	return nil
}

func detachProgram(cgFd int, id uint32) error {
	get := struct{ id, nextID, openFlags uint32 }{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&get), unsafe.Sizeof(get))
	if err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	attr := progAttachAttr{targetFd: uint32(cgFd), attachBpfFd: uint32(fd), attachType: unix.BPF_CGROUP_DEVICE}
	if _, err := bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}
