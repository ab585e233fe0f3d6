package cgroups

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64 { return &v }

func TestNormalizeDevices(t *testing.T) {
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "wr"},
		{Allow: true, Type: "b", Major: i64(8), Access: "m"},
		{Allow: true, Type: "a", Major: i64(10), Minor: i64(200), Access: "r"},
		{Allow: false, Type: "c", Major: i64(-1), Minor: i64(-1)},
	}
	got, err := normalizeDevices(rules)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "c 1:3 rw", "b 8:* m", "c 10:200 r", "b 10:200 r", "c *:* rwm"}
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.v1String() != want[i] {
			t.Errorf("rule %d = %q, want %q", i, r.v1String(), want[i])
		}
	}
	for _, bad := range []specs.LinuxDeviceCgroup{{Type: "x"}, {Type: "c", Access: "rx"}} {
		if _, err := normalizeDevices([]specs.LinuxDeviceCgroup{bad}); err == nil {
			t.Errorf("rule %+v accepted", bad)
		}
	}
}

// run interprets the device filter program for one request, as the kernel
// would (only the instruction forms deviceFilter emits).
func run(t *testing.T, prog []insn, typ, major, minor, access uint32) bool {
	t.Helper()
	var reg [11]uint64
	ctx := []uint32{access<<16 | typ, major, minor}
	for pc, steps := 0, 0; pc < len(prog); pc, steps = pc+1, steps+1 {
		if steps > 10000 {
			t.Fatal("program does not end")
		}
		in := prog[pc]
		switch in.op {
		case opLdxW:
			reg[in.dst] = uint64(ctx[in.off/4])
		case opMov32X:
			reg[in.dst] = uint64(uint32(reg[in.src]))
		case opAnd32K:
			reg[in.dst] = uint64(uint32(reg[in.dst]) & uint32(in.imm))
		case opRsh32K:
			reg[in.dst] = uint64(uint32(reg[in.dst]) >> uint32(in.imm))
		case opMov64K:
			reg[in.dst] = uint64(int64(in.imm))
		case opJneK:
			if reg[in.dst] != uint64(int64(in.imm)) {
				pc += int(in.off)
			}
		case opJeqK:
			if reg[in.dst] == uint64(int64(in.imm)) {
				pc += int(in.off)
			}
		case opExit:
			return reg[0] == 1
		default:
			t.Fatalf("unknown opcode %#x", in.op)
		}
	}
	t.Fatal("program ran off its end")
	return false
}

func TestDeviceFilterSemantics(t *testing.T) {
	rules := append([]specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(10), Minor: i64(229), Access: "rwm"},
		{Allow: true, Type: "b", Major: i64(8), Minor: i64(20), Access: "rw"},
		{Allow: true, Type: "c", Major: i64(4), Access: "rw"},
		{Allow: false, Type: "c", Major: i64(4), Minor: i64(7), Access: "w"},
	}, DefaultDevices...)
	norm, err := normalizeDevices(rules)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := deviceFilter(norm)
	if err != nil {
		t.Fatal(err)
	}
	const r, w, m = devcgRead, devcgWrit, devcgMknd
	cases := []struct {
		name                      string
		typ, major, minor, access uint32
		want                      bool
	}{
		{"fuse rw", devcgChr, 10, 229, r | w, true},
		{"null read", devcgChr, 1, 3, r, true},
		{"mknod any char", devcgChr, 99, 99, m, true},
		{"mknod any block", devcgBlk, 99, 99, m, true},
		{"read unlisted char", devcgChr, 99, 99, r, false},
		{"sda20 rw", devcgBlk, 8, 20, r | w, true},
		{"one rule must grant all of a request", devcgBlk, 8, 20, m | r, false},
		{"sda21 read", devcgBlk, 8, 21, r, false},
		{"char 8:20 is not the block rule", devcgChr, 8, 20, r, false},
		{"tty4 read", devcgChr, 4, 4, r, true},
		{"tty7 read after later deny w", devcgChr, 4, 7, r, true},
		{"tty7 write denied by later rule", devcgChr, 4, 7, w, false},
		{"tty7 rw denied", devcgChr, 4, 7, r | w, false},
		{"pts", devcgChr, 136, 5, r | w, true},
		{"tun", devcgChr, 10, 200, r | w, true},
	}
	for _, c := range cases {
		if got := run(t, prog, c.typ, c.major, c.minor, c.access); got != c.want {
			t.Errorf("%s: allowed=%v, want %v", c.name, got, c.want)
		}
	}
}

func TestDeviceFilterNoUnreachableCode(t *testing.T) {
	// A catch-all rule decides every request; the rules before it must
	// not be emitted (the verifier refuses unreachable instructions).
	norm, _ := normalizeDevices([]specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
		{Allow: false, Access: "rwm"},
	})
	prog, err := deviceFilter(norm)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) != 9 { // 7 loads + mov + exit
		t.Fatalf("program has %d instructions, want 9", len(prog))
	}
	if run(t, prog, devcgChr, 1, 3, devcgRead) {
		t.Error("1:3 allowed although the last rule denies all")
	}
	// A request no rule matches is denied: the rules form an allow list
	// whatever they start with.
	norm, _ = normalizeDevices([]specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "r"}})
	prog, _ = deviceFilter(norm)
	if !run(t, prog, devcgChr, 1, 3, devcgRead) || run(t, prog, devcgChr, 1, 3, devcgWrit) || run(t, prog, devcgChr, 1, 5, devcgRead) {
		t.Error("allow list without a leading deny-all misapplied")
	}
}

func TestEncode(t *testing.T) {
	b := encode([]insn{{op: opLdxW, dst: 2, src: 1, off: 4, imm: 0}, {op: opMov64K, dst: 0, imm: -1}})
	want := []byte{0x61, 0x12, 4, 0, 0, 0, 0, 0, 0xb7, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff}
	if string(b) != string(want) {
		t.Errorf("encode = % x, want % x", b, want)
	}
}
