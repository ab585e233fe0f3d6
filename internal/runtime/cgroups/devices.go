package cgroups

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// deviceRule is a validated device cgroup rule.
type deviceRule struct {
	allow        bool
	typ          byte  // 'a', 'c' or 'b'
	major, minor int64 // wildcard for any
	access       string
}

// normalizeDevices validates rules and fills their defaults: type "a",
// wildcard numbers, access "rwm". A rule of type "a" for specific numbers or
// with less than "rwm" becomes one "c" and one "b" rule, since the kernel
// reads any v1 "a" rule as "all devices, all access".
func normalizeDevices(rules []specs.LinuxDeviceCgroup) ([]deviceRule, error) {
	out := make([]deviceRule, 0, len(rules))
	for i, r := range rules {
		d := deviceRule{allow: r.Allow, typ: 'a', major: wildcard, minor: wildcard, access: "rwm"}
		switch r.Type {
		case "", "a":
		case "c", "b":
			d.typ = r.Type[0]
		default:
			return nil, errdefs.InvalidArgument(fmt.Errorf("device rule %d: invalid type %q (want a, b or c)", i, r.Type))
		}
		if r.Major != nil && *r.Major >= 0 {
			d.major = *r.Major
		}
		if r.Minor != nil && *r.Minor >= 0 {
			d.minor = *r.Minor
		}
		if r.Access != "" {
			acc, err := normalizeAccess(r.Access)
			if err != nil {
				return nil, errdefs.InvalidArgument(fmt.Errorf("device rule %d: %w", i, err))
			}
			d.access = acc
		}
		if d.typ == 'a' && (d.major != wildcard || d.minor != wildcard || d.access != "rwm") {
			c, b := d, d
			c.typ, b.typ = 'c', 'b'
			out = append(out, c, b)
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// normalizeAccess checks an access string of r, w and m and returns it in
// canonical order.
func normalizeAccess(a string) (string, error) {
	var r, w, m bool
	for _, c := range a {
		switch c {
		case 'r':
			r = true
		case 'w':
			w = true
		case 'm':
			m = true
		default:
			return "", fmt.Errorf("invalid access %q (want letters of rwm)", a)
		}
	}
	var b strings.Builder
	if r {
		b.WriteByte('r')
	}
	if w {
		b.WriteByte('w')
	}
	if m {
		b.WriteByte('m')
	}
	return b.String(), nil
}

// v1String is the rule as devices.allow and devices.deny take it.
func (d deviceRule) v1String() string {
	if d.typ == 'a' {
		return "a"
	}
	num := func(n int64) string {
		if n == wildcard {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	return string(d.typ) + " " + num(d.major) + ":" + num(d.minor) + " " + d.access
}

// setDevices applies the device rules in order on top of "deny all": v1
// through devices.allow and devices.deny, v2 through an eBPF program
// attached to the cgroup. A device no rule allows is denied.
func (m *Manager) setDevices(rules []specs.LinuxDeviceCgroup) error {
	if len(rules) == 0 {
		return nil
	}
	norm, err := normalizeDevices(rules)
	if err != nil {
		return err
	}
	if dir := m.paths["devices"]; dir != "" {
		// Start from "deny all" so that the rules form an allow list
		// whatever they begin with (as runc); a leading deny-all rule
		// is that very write.
		if norm[0].typ != 'a' || norm[0].allow {
			if err := writeFile(dir, "devices.deny", "a"); err != nil {
				return err
			}
		}
		for _, r := range norm {
			file := "devices.deny"
			if r.allow {
				file = "devices.allow"
			}
			if err := writeFile(dir, file, r.v1String()); err != nil {
				return err
			}
		}
		return nil
	}
	dir := m.paths[""]
	if dir == "" {
		return errdefs.Unavailable(fmt.Errorf("device rules requested but neither the v1 devices controller nor a unified hierarchy is mounted"))
	}
	return attachDeviceFilter(dir, norm)
}
