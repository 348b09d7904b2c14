package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Processor time, as Linux counts it in /proc, for the throughput rows'
// processor time per request: the machine's, which every row is charged
// alike (load generator, servers and database), and the subject
// processes'. It varies less from one run to the next than the rates, so
// that two versions of a path compare by it even where the machine's speed
// drifts. The counters are in clock ticks of 1/100 s (USER_HZ, which Linux
// keeps at 100 for /proc whatever the kernel's own tick).

const ticksPerSecond = 100

// machineCPU is the processor time the machine has spent busy (user,
// nice, system, interrupts) since it started, in seconds; ok is false
// where /proc/stat cannot be read.
func machineCPU() (seconds float64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, false
		}
		busy += v
	}
	return busy / ticksPerSecond, true
}

// processCPU is the processor time process pid has spent, user and
// system, in seconds; ok is false where /proc/<pid>/stat cannot be read.
func processCPU(pid int) (seconds float64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command's name, in parentheses, may hold spaces: the fields
	// counted from 3 (state) begin after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	var sum float64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum / ticksPerSecond, true
}

// TestProcessorTimeGrowsWithWork spins this process until the system says
// it spent 0.2 s of processor time (on a busy machine that takes longer
// than 0.2 s), wants the machine to have spent at least as much meanwhile,
// and a process that does not exist to be told apart.
func TestProcessorTimeGrowsWithWork(t *testing.T) {
	m0, okM := machineCPU()
	p0, okP := processCPU(os.Getpid())
	if !okM || !okP {
		t.Skip("no /proc processor times on this system")
	}
	const want = 0.2
	x := 0
	var p1 float64
	for deadline := time.Now().Add(30 * time.Second); ; {
		for range 1 << 20 {
			x++
		}
		p1, _ = processCPU(os.Getpid())
		if p1-p0 >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("this process spun for 30 s and its processor time grew by %.2f s", p1-p0)
		}
	}
	m1, _ := machineCPU()
	// Both count in ticks of 10 ms, read at slightly different moments.
	if m1-m0 < p1-p0-0.02 {
		t.Errorf("the machine spent %.2f s, less than this process's %.2f s", m1-m0, p1-p0)
	}
	if _, ok := processCPU(1 << 30); ok {
		t.Error("a process that does not exist has a processor time")
	}
	_ = x
}
