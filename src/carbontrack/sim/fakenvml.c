/*
 * A fake libnvidia-ml.so.1 for tests, the node simulator and benchmarks.
 *
 * It implements the NVML entry points CarbonTrack calls, with the signatures and struct
 * layouts of the NVML headers that nvidia-ml-py (pynvml) binds through ctypes. Device
 * state comes from a text file named by the environment variable
 * CARBONTRACK_FAKE_NVML_STATE, re-read on every call, so a test (or the simulator) can
 * advance energy counters, lose a GPU or make PIDs vanish while a real process holds
 * the library open. A call reads the file's bytes and parses them only when they differ
 * from the last call's (on the same thread): parsing a few hundred records per call would
 * make the fake far costlier than a real driver's ioctl, and benchmarks count its time. Write the file atomically (temp + rename): carbontrack.sim.fakenvml
 * write_state() does.
 *
 * State file: one record per line, fields separated by TABs, "key=value" (values may
 * hold spaces). Unknown keys are ignored; '#' starts a comment line.
 *
 *   driver   version=550.54.15
 *   init     error=9                       (optional: nvmlInit fails with this code)
 *   gpu      uuid=GPU-... name=... mem_total=B mem_used=B energy_mj=N energy_supported=1
 *            power_supported=1 power_mw=N util_gpu=% util_mem=% state=ok|lost|gone mig_mode=-1|0|1
 *            procs_error=0 putil_error=0
 *   mig      gpu=<line index of its gpu> uuid=MIG-... name=... mem_total=B gi=N ci=N
 *   proc     gpu=<gpu line index> mig=<mig index or -1> pid=N used_mem=B sm=% mem=% ts=us
 *
 * "gone" GPUs are not counted and their handles answer GPU_IS_LOST; "lost" GPUs are
 * counted but every call on them answers GPU_IS_LOST (NVML's behaviour after an Xid 79).
 * gpu=<N> in mig/proc records is the index among *all* gpu lines, gone ones included.
 *
 * Behaviour taken from nvml.h (NVIDIA/go-nvml gen/nvml/nvml.h at commit
 * 2f9e261fe40a7a1c54783d66805e8920564763b4, NVML_API_VERSION 13); each is cited where it
 * is implemented:
 *   - return codes: the nvmlReturn_t enum, all of it (values 0-30 and 999);
 *   - nvmlInit_v2 / nvmlShutdown: "A reference count of the number of initializations is
 *     maintained. Shutdown only occurs when the reference count reaches zero. For backwards
 *     compatibility, no error is reported if nvmlShutdown() is called more times than
 *     nvmlInit().";
 *   - nvmlDeviceGetUtilizationRates: "On MIG-enabled GPUs, querying device utilization rates
 *     is not currently supported."; nvmlDeviceGetProcessUtilization: "On MIG-enabled GPUs,
 *     querying process utilization is not currently supported." Both answer NOT_SUPPORTED on
 *     the parent and on MIG device handles of a GPU whose MIG mode is on;
 *   - nvmlMemory_v2_t.version must be nvmlMemory_v2 = NVML_STRUCT_VERSION(Memory, 2)
 *     = sizeof(nvmlMemory_v2_t) | 2 << 24, else NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
 *   - nvmlProcessInfo_t is nvmlProcessInfo_v2_t (pid, usedGpuMemory, gpuInstanceId,
 *     computeInstanceId; the ids 0xFFFFFFFF when MIG is off).
 * Remaining differences from the real library: docs/sources.md.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_ALREADY_INITIALIZED = 5,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_INSUFFICIENT_POWER = 8,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_IRQ_ISSUE = 11,
    NVML_ERROR_LIBRARY_NOT_FOUND = 12,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_CORRUPTED_INFOROM = 14,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_RESET_REQUIRED = 16,
    NVML_ERROR_OPERATING_SYSTEM = 17,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_IN_USE = 19,
    NVML_ERROR_MEMORY = 20,
    NVML_ERROR_NO_DATA = 21,
    NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22,
    NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
    NVML_ERROR_FREQ_NOT_SUPPORTED = 24,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_DEPRECATED = 26,
    NVML_ERROR_NOT_READY = 27,
    NVML_ERROR_GPU_NOT_FOUND = 28,
    NVML_ERROR_INVALID_STATE = 29,
    NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30,
    NVML_ERROR_UNKNOWN = 999
};

#define MAX_GPUS 16
#define MAX_MIGS 7
#define MAX_PROCS 256
#define STR 96

typedef struct {
    char uuid[STR], name[STR];
    unsigned long long mem_total, mem_used, energy_mj;
    int energy_supported, power_supported;
    unsigned power_mw, util_gpu, util_mem;
    int state; /* 0 ok, 1 lost, 2 gone */
    int mig_mode; /* -1 not capable, 0 off, 1 on */
    int procs_error, putil_error;
    int n_migs;
    char mig_uuid[MAX_MIGS][STR], mig_name[MAX_MIGS][STR];
    unsigned long long mig_mem[MAX_MIGS];
    unsigned mig_gi[MAX_MIGS], mig_ci[MAX_MIGS];
} fake_gpu;

typedef struct {
    int gpu, mig;
    unsigned pid, sm, mem;
    unsigned long long used_mem, ts;
} fake_proc;

typedef struct {
    char driver[STR];
    int init_error;
    int n_gpus;
    fake_gpu gpus[MAX_GPUS];
    int n_procs;
    fake_proc procs[MAX_PROCS];
} fake_state;

/* Handles are stable addresses: a GPU line index, and a MIG slot within it. */
struct fake_dev {
    int gpu;
    int mig; /* -1 for the physical GPU */
};
typedef struct fake_dev *nvmlDevice_t;
static struct fake_dev gpu_handles[MAX_GPUS];
static struct fake_dev mig_handles[MAX_GPUS][MAX_MIGS];
/* per thread: a sampling thread and a caller may reload at the same time */
static __thread fake_state S;
/* nvmlInit_v2 calls not yet matched by nvmlShutdown (nvml.h: reference-counted). Atomic:
 * a sampling thread and the caller may init/shut down at once. */
static int init_count;
#define initialised (__atomic_load_n(&init_count, __ATOMIC_SEQ_CST) > 0)

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
#define NVML_STRUCT_VERSION(data, ver) (unsigned int)(sizeof(nvml##data##_v##ver##_t) | ((ver) << 24U))
#define nvmlMemory_v2 NVML_STRUCT_VERSION(Memory, 2)
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;
typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

static const char *field(char *rec, const char *key, char *out, size_t n) {
    /* rec is "kind\tk=v\tk=v"; copy the value of key into out, or return NULL */
    size_t klen = strlen(key);
    char *p = rec;
    while (p && *p) {
        char *end = strchr(p, '\t');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = len - klen - 1;
            if (vlen >= n) vlen = n - 1;
            memcpy(out, p + klen + 1, vlen);
            out[vlen] = 0;
            return out;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

static unsigned long long num(char *rec, const char *key, unsigned long long dflt) {
    char buf[STR];
    return field(rec, key, buf, sizeof buf) ? strtoull(buf, NULL, 10) : dflt;
}

static long long snum(char *rec, const char *key, long long dflt) {
    char buf[STR];
    return field(rec, key, buf, sizeof buf) ? strtoll(buf, NULL, 10) : dflt;
}

static void str(char *rec, const char *key, char *out) {
    if (!field(rec, key, out, STR)) out[0] = 0;
}

/* Re-read the state file. Returns NVML_SUCCESS or the error NVML would give. */
/* The state file's bytes as last parsed on this thread (S holds the parse), and a scratch
 * buffer the next read goes to. Both are kept across calls: fresh heap pages per call
 * (page faults) cost more than the read itself. */
static __thread char *parsed_bytes, *scratch;
static __thread size_t parsed_len, parsed_cap, scratch_cap;
static __thread int parsed_valid;

/* Read the whole file into scratch; -1 if it cannot be read. */
static long read_all(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    size_t n = 0;
    for (;;) {
        if (n == scratch_cap) {
            size_t cap = scratch_cap ? scratch_cap * 2 : 65536;
            char *bigger = realloc(scratch, cap);
            if (!bigger) { close(fd); return -1; }
            scratch = bigger;
            scratch_cap = cap;
        }
        ssize_t r = read(fd, scratch + n, scratch_cap - n);
        if (r < 0) { close(fd); return -1; }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    return (long)n;
}

static nvmlReturn_t parse(FILE *f);

static nvmlReturn_t load(void) {
    const char *path = getenv("CARBONTRACK_FAKE_NVML_STATE");
    if (!path || !*path) return NVML_ERROR_DRIVER_NOT_LOADED;
    long got = read_all(path);
    if (got < 0) { parsed_valid = 0; return NVML_ERROR_DRIVER_NOT_LOADED; }
    size_t len = (size_t)got;
    if (parsed_valid && len == parsed_len && memcmp(scratch, parsed_bytes, len) == 0)
        return NVML_SUCCESS; /* unchanged since the last parse */
    /* the new bytes become the parsed ones; the old buffer is the next scratch */
    char *tmp = parsed_bytes; size_t tmp_cap = parsed_cap;
    parsed_bytes = scratch; parsed_cap = scratch_cap; parsed_len = len;
    scratch = tmp; scratch_cap = tmp_cap;
    FILE *f = len ? fmemopen(parsed_bytes, len, "r") : fopen("/dev/null", "r");
    if (!f) { parsed_valid = 0; return NVML_ERROR_DRIVER_NOT_LOADED; }
    parsed_valid = 1;
    return parse(f);
}

/* Parse state records into S. */
static nvmlReturn_t parse(FILE *f) {
    memset(&S, 0, sizeof S);
    strcpy(S.driver, "550.54.15");
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (strncmp(line, "driver\t", 7) == 0) {
            str(line, "version", S.driver);
        } else if (strncmp(line, "init\t", 5) == 0) {
            S.init_error = (int)snum(line, "error", 0);
        } else if (strncmp(line, "gpu\t", 4) == 0 && S.n_gpus < MAX_GPUS) {
            fake_gpu *g = &S.gpus[S.n_gpus++];
            char st[STR];
            str(line, "uuid", g->uuid);
            str(line, "name", g->name);
            g->mem_total = num(line, "mem_total", 0);
            g->mem_used = num(line, "mem_used", 0);
            g->energy_mj = num(line, "energy_mj", 0);
            g->energy_supported = (int)snum(line, "energy_supported", 1);
            g->power_supported = (int)snum(line, "power_supported", 1);
            g->power_mw = (unsigned)num(line, "power_mw", 0);
            g->util_gpu = (unsigned)num(line, "util_gpu", 0);
            g->util_mem = (unsigned)num(line, "util_mem", 0);
            g->mig_mode = (int)snum(line, "mig_mode", -1);
            g->procs_error = (int)snum(line, "procs_error", 0);
            g->putil_error = (int)snum(line, "putil_error", 0);
            str(line, "state", st);
            g->state = strcmp(st, "lost") == 0 ? 1 : strcmp(st, "gone") == 0 ? 2 : 0;
        } else if (strncmp(line, "mig\t", 4) == 0) {
            long long gi = snum(line, "gpu", -1);
            if (gi < 0 || gi >= S.n_gpus) continue;
            fake_gpu *g = &S.gpus[gi];
            if (g->n_migs >= MAX_MIGS) continue;
            int m = g->n_migs++;
            str(line, "uuid", g->mig_uuid[m]);
            str(line, "name", g->mig_name[m]);
            g->mig_mem[m] = num(line, "mem_total", 0);
            g->mig_gi[m] = (unsigned)num(line, "gi", (unsigned long long)m + 1);
            g->mig_ci[m] = (unsigned)num(line, "ci", 0);
        } else if (strncmp(line, "proc\t", 5) == 0 && S.n_procs < MAX_PROCS) {
            fake_proc *p = &S.procs[S.n_procs++];
            p->gpu = (int)snum(line, "gpu", 0);
            p->mig = (int)snum(line, "mig", -1);
            p->pid = (unsigned)num(line, "pid", 0);
            p->used_mem = num(line, "used_mem", 0);
            p->sm = (unsigned)num(line, "sm", 0);
            p->mem = (unsigned)num(line, "mem", 0);
            p->ts = num(line, "ts", 1);
        }
    }
    fclose(f);
    return NVML_SUCCESS;
}

/* Common prologue of device calls: reload, check the handle, the GPU's health. */
static nvmlReturn_t dev_check(nvmlDevice_t d, fake_gpu **g) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = load();
    if (r) return r;
    if (!d || d->gpu < 0 || d->gpu >= MAX_GPUS) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->gpu >= S.n_gpus) return NVML_ERROR_GPU_IS_LOST;
    *g = &S.gpus[d->gpu];
    if ((*g)->state != 0) return NVML_ERROR_GPU_IS_LOST;
    if (d->mig >= 0 && d->mig >= (*g)->n_migs) return NVML_ERROR_NOT_FOUND;
    return NVML_SUCCESS;
}

static nvmlReturn_t copy_str(const char *src, char *dst, unsigned len) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

/* ---- library ---------------------------------------------------------------- */

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    nvmlReturn_t r = load();
    if (r) return r;
    if (S.init_error) return S.init_error;
    for (int i = 0; i < MAX_GPUS; i++) {
        gpu_handles[i].gpu = i;
        gpu_handles[i].mig = -1;
        for (int m = 0; m < MAX_MIGS; m++) {
            mig_handles[i][m].gpu = i;
            mig_handles[i][m].mig = m;
        }
    }
    __atomic_add_fetch(&init_count, 1, __ATOMIC_SEQ_CST);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlShutdown(void) {
    /* one reference fewer; the library shuts down at zero. An unmatched call is not an
     * error (nvml.h: "no error is reported if nvmlShutdown() is called more times than
     * nvmlInit()"). */
    int n = __atomic_load_n(&init_count, __ATOMIC_SEQ_CST);
    while (n > 0 && !__atomic_compare_exchange_n(&init_count, &n, n - 1, 0, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST)) {
    }
    return NVML_SUCCESS;
}

/* The fake's own probe, for tests: the current reference count (not an NVML function). */
int carbontrackFakeNvmlInitCount(void) { return __atomic_load_n(&init_count, __ATOMIC_SEQ_CST); }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt request issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED: return "vGPU ECC not supported";
    case NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient resources";
    case NVML_ERROR_FREQ_NOT_SUPPORTED: return "Frequency not supported";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    case NVML_ERROR_DEPRECATED: return "Deprecated";
    case NVML_ERROR_NOT_READY: return "Not ready";
    case NVML_ERROR_GPU_NOT_FOUND: return "GPU not found";
    case NVML_ERROR_INVALID_STATE: return "Invalid state";
    case NVML_ERROR_RESET_TYPE_NOT_SUPPORTED: return "Reset type not supported";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int len) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = load();
    return r ? r : copy_str(S.driver, version, len);
}

/* ---- enumeration ------------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = load();
    if (r) return r;
    unsigned n = 0;
    for (int i = 0; i < S.n_gpus; i++) n += S.gpus[i].state != 2;
    *count = n;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = load();
    if (r) return r;
    unsigned seen = 0;
    for (int i = 0; i < S.n_gpus; i++) {
        if (S.gpus[i].state == 2) continue;
        if (seen++ == index) {
            if (S.gpus[i].state == 1) return NVML_ERROR_GPU_IS_LOST;
            *device = &gpu_handles[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_INVALID_ARGUMENT;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = load();
    if (r) return r;
    for (int i = 0; i < S.n_gpus; i++) {
        if (S.gpus[i].state == 2) continue;
        if (strcmp(S.gpus[i].uuid, uuid) == 0) {
            if (S.gpus[i].state == 1) return NVML_ERROR_GPU_IS_LOST;
            *device = &gpu_handles[i];
            return NVML_SUCCESS;
        }
        for (int m = 0; m < S.gpus[i].n_migs; m++) {
            if (strcmp(S.gpus[i].mig_uuid[m], uuid) == 0) {
                *device = &mig_handles[i][m];
                return NVML_SUCCESS;
            }
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *index) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    unsigned idx = 0;
    for (int i = 0; i < d->gpu; i++) idx += S.gpus[i].state != 2;
    *index = idx;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int len) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    return copy_str(d->mig >= 0 ? g->mig_name[d->mig] : g->name, name, len);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int len) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    return copy_str(d->mig >= 0 ? g->mig_uuid[d->mig] : g->uuid, uuid, len);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *mem) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    mem->total = d->mig >= 0 ? g->mig_mem[d->mig] : g->mem_total;
    mem->used = 0;
    if (d->mig >= 0) { /* a MIG instance's used memory: its processes' (per-instance info) */
        for (int i = 0; i < S.n_procs; i++)
            if (S.procs[i].gpu == d->gpu && S.procs[i].mig == d->mig) mem->used += S.procs[i].used_mem;
    } else {
        mem->used = g->mem_used;
    }
    mem->free = mem->total > mem->used ? mem->total - mem->used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *mem) {
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    /* versioned struct: the caller says which layout it passed (nvml.h NVML_STRUCT_VERSION) */
    if (mem->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    nvmlMemory_t m;
    nvmlReturn_t r = nvmlDeviceGetMemoryInfo(d, &m);
    if (r) return r;
    mem->total = m.total;
    mem->reserved = 0;
    mem->free = m.free;
    mem->used = m.used;
    return NVML_SUCCESS;
}

/* ---- energy and power -------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *energy) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    /* NVML measures the physical board only: MIG instance handles answer NOT_SUPPORTED. */
    if (d->mig >= 0 || !g->energy_supported) return NVML_ERROR_NOT_SUPPORTED;
    *energy = g->energy_mj;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *power) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (d->mig >= 0 || !g->power_supported) return NVML_ERROR_NOT_SUPPORTED;
    *power = g->power_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    /* nvml.h: "On MIG-enabled GPUs, querying device utilization rates is not currently
     * supported." — the parent's handle as much as an instance's */
    if (d->mig >= 0 || g->mig_mode == 1) return NVML_ERROR_NOT_SUPPORTED;
    if (!u) return NVML_ERROR_INVALID_ARGUMENT;
    u->gpu = g->util_gpu;
    u->memory = g->util_mem;
    return NVML_SUCCESS;
}

/* ---- processes ---------------------------------------------------------------- */

static int proc_matches(const fake_proc *p, nvmlDevice_t d) {
    return p->gpu == d->gpu && (d->mig < 0 || p->mig == d->mig);
}

static nvmlReturn_t running(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (g->procs_error) return g->procs_error;
    unsigned n = 0;
    for (int i = 0; i < S.n_procs; i++) n += proc_matches(&S.procs[i], d);
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (!infos || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned k = 0;
    for (int i = 0; i < S.n_procs; i++) {
        const fake_proc *p = &S.procs[i];
        if (!proc_matches(p, d)) continue;
        infos[k].pid = p->pid;
        infos[k].usedGpuMemory = p->used_mem;
        infos[k].gpuInstanceId = p->mig >= 0 ? g->mig_gi[p->mig] : 0xFFFFFFFFu;
        infos[k].computeInstanceId = p->mig >= 0 ? g->mig_ci[p->mig] : 0xFFFFFFFFu;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return running(d, c, i);
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return running(d, c, i);
}

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d, nvmlProcessUtilizationSample_t *utilization,
                                             unsigned int *count, unsigned long long lastSeenTimeStamp) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    /* nvml.h: "On MIG-enabled GPUs, querying process utilization is not currently
     * supported." */
    if (d->mig >= 0 || g->mig_mode == 1) return NVML_ERROR_NOT_SUPPORTED;
    if (g->putil_error) return g->putil_error;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned n = 0;
    for (int i = 0; i < S.n_procs; i++)
        n += proc_matches(&S.procs[i], d) && S.procs[i].ts > lastSeenTimeStamp;
    if (n == 0) return NVML_ERROR_NOT_FOUND; /* NVML: no samples since lastSeenTimeStamp */
    if (!utilization || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned k = 0;
    for (int i = 0; i < S.n_procs; i++) {
        const fake_proc *p = &S.procs[i];
        if (!proc_matches(p, d) || p->ts <= lastSeenTimeStamp) continue;
        utilization[k].pid = p->pid;
        utilization[k].timeStamp = p->ts;
        utilization[k].smUtil = p->sm;
        utilization[k].memUtil = p->mem;
        utilization[k].encUtil = 0;
        utilization[k].decUtil = 0;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}

/* ---- MIG ---------------------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (d->mig >= 0 || g->mig_mode < 0) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = (unsigned)g->mig_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (g->mig_mode < 0) return NVML_ERROR_NOT_SUPPORTED;
    *count = g->mig_mode == 1 ? MAX_MIGS : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *mig) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (d->mig >= 0 || g->mig_mode != 1) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= MAX_MIGS) return NVML_ERROR_INVALID_ARGUMENT;
    if ((int)index >= g->n_migs) return NVML_ERROR_NOT_FOUND;
    *mig = &mig_handles[d->gpu][index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig, nvmlDevice_t *device) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(mig, &g);
    if (r) return r;
    if (mig->mig < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpu_handles[mig->gpu];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned int *isMig) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    *isMig = d->mig >= 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (d->mig < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = g->mig_gi[d->mig];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    fake_gpu *g;
    nvmlReturn_t r = dev_check(d, &g);
    if (r) return r;
    if (d->mig < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = g->mig_ci[d->mig];
    return NVML_SUCCESS;
}
