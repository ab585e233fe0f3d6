package runtime

import (
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
)

func TestFilterPsKeepsHeaderAndContainerRows(t *testing.T) {
	out := "UID        PID  PPID  C STIME TTY          TIME CMD\n" +
		"root         1     0  0 04:00 ?        00:00:01 /sbin/init\n" +
		"root       420     1  0 04:01 ?        00:00:00 sh -c sleep 1000 & wait\n" +
		"root       421   420  0 04:01 ?        00:00:00 sleep 1000\n" +
		"root      4200     1  0 04:01 ?        00:00:00 sleep 42\n"
	got, err := FilterPs(out, []int{420, 421})
	if err != nil {
		t.Fatal(err)
	}
	want := "UID        PID  PPID  C STIME TTY          TIME CMD\n" +
		"root       420     1  0 04:01 ?        00:00:00 sh -c sleep 1000 & wait\n" +
		"root       421   420  0 04:01 ?        00:00:00 sleep 1000\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFilterPsFindsPIDColumnAnywhere(t *testing.T) {
	out := "COMMAND   PID\nsh        7\nsleep     8\n"
	got, err := FilterPs(out, []int{8})
	if err != nil || got != "COMMAND   PID\nsleep     8\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestFilterPsNeedsPIDColumn(t *testing.T) {
	_, err := FilterPs("COMMAND\nsh\n", []int{1})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "PID") {
		t.Fatalf("err = %v, want an invalid argument naming the PID column", err)
	}
	if _, err := FilterPs("PID CMD\nx sh\n", []int{1}); err == nil {
		t.Fatal("a row with a non-numeric PID was accepted")
	}
}
