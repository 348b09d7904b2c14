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

// TestProcessorTimeGrowsWithWork spins this process for a while and wants
// both counters to have grown by about that much, and a process that does
// not exist to be told apart.
func TestProcessorTimeGrowsWithWork(t *testing.T) {
	m0, okM := machineCPU()
	p0, okP := processCPU(os.Getpid())
	if !okM || !okP {
		t.Skip("no /proc processor times on this system")
	}
	const spin = 300 * time.Millisecond
	x := 0
	for start := time.Now(); time.Since(start) < spin; {
		x++
	}
	m1, _ := machineCPU()
	p1, _ := processCPU(os.Getpid())
	// Ticks are 10 ms and the process may have been scheduled out for
	// part of the spin: half of it at least.
	if p1-p0 < spin.Seconds()/2 {
		t.Errorf("this process spent %.2f s of processor time spinning for %v", p1-p0, spin)
	}
	if m1-m0 < p1-p0-0.02 {
		t.Errorf("the machine spent %.2f s, less than this process's %.2f s", m1-m0, p1-p0)
	}
	if _, ok := processCPU(1 << 30); ok {
		t.Error("a process that does not exist has a processor time")
	}
	_ = x
}
