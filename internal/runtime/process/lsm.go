package process

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// AppArmorEnabled reports whether the host kernel runs AppArmor (for
// `features` as well as Validate).
func AppArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && bytes.HasPrefix(b, []byte("Y"))
}

// SELinuxEnabled reports whether the host runs SELinux: selinuxfs is mounted
// in this mount namespace. For `features` as well as Validate.
func SELinuxEnabled() (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// The filesystem type is the first field after the " - " separator.
		_, rest, ok := strings.Cut(sc.Text(), " - ")
		if ok && strings.HasPrefix(rest, "selinuxfs ") {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return false, nil
}

// validateLSM refuses a label for a security module the host does not run.
func validateLSM(apparmorProfile, selinuxLabel string) error {
	if apparmorProfile != "" && !AppArmorEnabled() {
		return errdefs.FailedPrecondition(fmt.Errorf("process.apparmorProfile %q is set but AppArmor is not enabled on this host", apparmorProfile))
	}
	if selinuxLabel != "" {
		on, err := SELinuxEnabled()
		if err != nil {
			return err
		}
		if !on {
			return errdefs.FailedPrecondition(fmt.Errorf("process.selinuxLabel %q is set but SELinux is not enabled on this host (no selinuxfs)", selinuxLabel))
		}
	}
	return nil
}

// writeAttr writes value to one of the calling thread's LSM attributes.
func writeAttr(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// setAppArmorExec makes the next execve of the calling thread change to
// profile: the AppArmor-specific attribute first (kernels with several LSMs),
// the shared one otherwise.
func setAppArmorExec(profile string) error {
	value := "exec " + profile
	err := writeAttr("/proc/thread-self/attr/apparmor/exec", value)
	if errors.Is(err, os.ErrNotExist) {
		err = writeAttr("/proc/thread-self/attr/exec", value)
	}
	if errors.Is(err, unix.EINVAL) && !AppArmorEnabled() {
		return fmt.Errorf("set AppArmor exec profile %q: %w (AppArmor is not enabled)", profile, err)
	}
	if err != nil {
		return fmt.Errorf("set AppArmor exec profile %q: %w", profile, err)
	}
	return nil
}

// setSELinuxExec makes the next execve of the calling thread run as label.
func setSELinuxExec(label string) error {
	if err := writeAttr("/proc/thread-self/attr/exec", label); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("set SELinux exec label %q: %w (SELinux is not enabled, or the label is invalid)", label, err)
		}
		return fmt.Errorf("set SELinux exec label %q: %w", label, err)
	}
	return nil
}
