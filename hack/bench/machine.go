package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// machine describes where the figures were measured.
type machine struct {
	CPUModel string
	CPUs     int
	MemTotal uint64 // bytes
	Go       string
	Kernel   string
	// Disk is the filesystem holding the queues: device, type, mount
	// point and size.
	Disk string
	// Load is the load average when the run started: the machine is
	// shared, so it says how quiet it was.
	Load string
}

// String is the description printed at the top of a run.
func (m machine) String() string {
	return fmt.Sprintf("CPU: %s, %d logical CPUs\nMemory: %.1f GiB\nGo: %s\nKernel: %s\nQueue disk: %s\nLoad average at start: %s",
		m.CPUModel, m.CPUs, float64(m.MemTotal)/(1<<30), m.Go, m.Kernel, m.Disk, m.Load)
}

// describeMachine reads /proc and statfs for dir, the directory the queues
// live in. Missing information is reported as unknown rather than failing
// the run.
func describeMachine(dir string) machine {
	m := machine{CPUModel: "unknown", CPUs: runtime.NumCPU(), Go: runtime.Version(), Kernel: "unknown", Disk: "unknown", Load: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if model, n := parseCPUInfo(string(data)); n > 0 {
			m.CPUModel, m.CPUs = model, n
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = parseMemTotal(string(data))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.Load = strings.Join(f[:3], " ")
		}
	}
	if data, err := os.ReadFile("/proc/mounts"); err == nil {
		abs, _ := filepath.Abs(dir)
		if dev, mnt, fstype, ok := mountOf(string(data), abs); ok {
			m.Disk = fmt.Sprintf("%s (%s) mounted on %s", dev, fstype, mnt)
			if rot, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "queue", "rotational")); err == nil {
				if strings.TrimSpace(string(rot)) == "0" {
					m.Disk += ", non-rotational"
				} else {
					m.Disk += ", rotational"
				}
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		total := float64(st.Blocks) * float64(st.Bsize)
		free := float64(st.Bavail) * float64(st.Bsize)
		m.Disk += fmt.Sprintf(", %.0f GiB, %.0f GiB free; queues in %s", total/(1<<30), free/(1<<30), dir)
	}
	return m
}

// parseCPUInfo returns the first model name in /proc/cpuinfo and the count
// of processors.
func parseCPUInfo(s string) (model string, n int) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(value)
			}
		}
	}
	if model == "" {
		model = "unknown"
	}
	return model, n
}

// parseMemTotal returns MemTotal from /proc/meminfo in bytes, 0 if absent.
func parseMemTotal(s string) uint64 {
	v, _ := procField(s, "MemTotal")
	return v
}

// procField returns a "Name:   123 kB" field of a /proc file in bytes.
func procField(s, name string) (uint64, bool) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != name {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		return v, true
	}
	return 0, false
}

// mountOf finds the mount holding path in /proc/mounts: the longest mount
// point that is path or one of its parents.
func mountOf(mounts, path string) (device, mountPoint, fstype string, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(mounts))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		inside := path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")
		if inside && len(mp) >= len(mountPoint) {
			device, mountPoint, fstype, ok = f[0], mp, f[2], true
		}
	}
	return device, mountPoint, fstype, ok
}

// memory is a process's resident set, now and at its peak.
type memory struct {
	RSS, HWM uint64 // bytes
}

// processMemory reads VmRSS and VmHWM of a process.
func processMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	return parseStatusMemory(string(data))
}

func parseStatusMemory(s string) (memory, error) {
	rss, ok1 := procField(s, "VmRSS")
	hwm, ok2 := procField(s, "VmHWM")
	if !ok1 || !ok2 {
		return memory{}, fmt.Errorf("no VmRSS or VmHWM in the process status")
	}
	return memory{RSS: rss, HWM: hwm}, nil
}
