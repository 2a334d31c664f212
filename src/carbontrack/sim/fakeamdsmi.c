/*
 * A fake libamd_smi.so for tests, the node simulator and benchmarks.
 *
 * The real `amdsmi` Python bindings (PyPI amdsmi 7.0.2, amdsmi_wrapper.py) load
 * libamd_smi.so with ctypes and bind 184 entry points at import time, so this library
 * exports every one of them: the ones CarbonTrack calls answer from a state file, the
 * rest answer AMDSMI_STATUS_NOT_SUPPORTED. Struct layouts copy the bindings' ctypes
 * declarations (amdsmi_wrapper.py of amdsmi 7.0.2, all `_pack_ = 1` with explicit padding).
 * Device state comes from the file named by CARBONTRACK_FAKE_AMDSMI_STATE, re-read on every
 * call, so a test can advance counters, lose a GPU or start processes while a real process
 * holds the library open. Write it atomically (carbontrack.sim.fakeamdsmi.write_state).
 *
 * State file: one record per line, TAB-separated key=value fields; '#' starts a comment.
 *
 *   lib      version=7.0.2                       (amdsmi_get_lib_version)
 *   init     error=N                             (optional: amdsmi_init fails with N)
 *   gpu      bdf=0000:c1:00.0 uuid=... name=... mem_total=B energy=COUNTS
 *            resolution=15.3 power_w=N avg_power_w=N energy_error=0 power_error=0
 *            procs_error=0 state=ok|lost lost_error=14 partition=SPX
 *   part     gpu=<gpu line index> bdf=... uuid=... mem_total=B energy_error=2
 *   proc     gpu=<gpu index> part=<0 = the gpu's own handle, k = its k-th part line>
 *            pid=N name=... mem=B vram=B gfx_ns=N cu=%
 *
 * One `gpu` line is one socket (a physical GPU); its processor handles are the GPU itself
 * (partition 0) followed by its `part` lines (partitions 1..n of a compute-partitioned
 * GPU, amdsmi_get_gpu_kfd_info's current_partition_id). "lost" GPUs stay enumerated but
 * every call on their handles answers lost_error (the library documents no code for a
 * GPU that fell off the bus; AMDSMI_STATUS_FILE_ERROR is what a vanished sysfs file gives).
 *
 * Behaviour taken from AMD's header include/amd_smi/amdsmi.h (ROCm/amdsmi at commit
 * 0ceca28f4139dced5e9b5739a3f393780d7add48) and rocm_smi/src/rocm_smi.cc there:
 *   - amdsmi_get_energy_count: "counter_resolution resolution of the counter @p power in
 *     micro Joules"; "timestamp ... Resolution: 1 ns"; the accumulator is a uint64_t.
 *     rocm_smi.cc hard-codes kEnergyCounterResolution = 15.3F ("all ASICs have same
 *     resolution"); the gpu_metrics header names the unit 15.259 uJ (2^-16 J). Joules =
 *     energy_accumulator * counter_resolution * 1e-6 (as amdsmi_cli prints it: "/= 1000000").
 *   - amdsmi_get_power_info: power fields in W (amdsmi_cli's power_unit "W"); 0xFFFF
 *     means N/A (the bindings map it to the string "N/A").
 *   - amdsmi_get_gpu_process_list: "If the user sets max_processes to 0, the current total
 *     number of processes will replace max_processes"; a buffer smaller than the process
 *     count is filled and answers AMDSMI_STATUS_OUT_OF_RESOURCES; max_processes is always
 *     set to the number of running processes; engine_usage is "How much time the process
 *     spend using these engines in ns"; memory in bytes.
 *   - calls before amdsmi_init answer AMDSMI_STATUS_NOT_INIT.
 * Build with -DFAKE_AMDSMI_OMIT_NEW to leave out amdsmi_get_gpu_enumeration_info: a
 * library older than the bindings, which then fail to import ("undefined symbol").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint32_t amdsmi_status_t;
enum {
    AMDSMI_STATUS_SUCCESS = 0,
    AMDSMI_STATUS_INVAL = 1,
    AMDSMI_STATUS_NOT_SUPPORTED = 2,
    AMDSMI_STATUS_FILE_ERROR = 14,
    AMDSMI_STATUS_OUT_OF_RESOURCES = 15,
    AMDSMI_STATUS_INIT_ERROR = 18,
    AMDSMI_STATUS_NOT_FOUND = 31,
    AMDSMI_STATUS_NOT_INIT = 32,
    AMDSMI_STATUS_INSUFFICIENT_SIZE = 41,
};
#define AMDSMI_PROCESSOR_TYPE_AMD_GPU 1

#pragma pack(push, 1)
typedef struct { uint32_t major, minor, release; uint8_t pad[4]; char *build; } amdsmi_version_t;
typedef struct {
    uint64_t socket_power; uint32_t current_socket_power; uint32_t average_socket_power;
    uint64_t gfx_voltage, soc_voltage, mem_voltage; uint32_t power_limit; uint8_t pad[4];
    uint64_t reserved[18];
} amdsmi_power_info_t;
typedef struct {
    char market_name[256]; uint32_t vendor_id; char vendor_name[256]; uint32_t subvendor_id;
    uint64_t device_id; uint32_t rev_id; char asic_serial[256]; uint32_t oam_id;
    uint32_t num_of_compute_units; uint8_t pad[4]; uint64_t target_graphics_version;
    uint32_t subsystem_id; uint32_t reserved[21];
} amdsmi_asic_info_t;
typedef struct { uint64_t kfd_id; uint32_t node_id; uint32_t current_partition_id; uint32_t reserved[12]; } amdsmi_kfd_info_t;
typedef struct {
    char name[256]; uint32_t pid; uint8_t pad[4]; uint64_t mem;
    struct { uint64_t gfx, enc; uint32_t reserved[12]; } engine_usage;
    struct { uint64_t gtt_mem, cpu_mem, vram_mem; uint32_t reserved[10]; } memory_usage;
    char container_name[256]; uint32_t cu_occupancy; uint32_t reserved[11];
} amdsmi_proc_info_t;
#pragma pack(pop)

#define MAX_GPUS 64
#define MAX_PROCS 512
#define STR 128

typedef struct {
    char bdf[STR], uuid[STR], name[STR], partition[16];
    uint64_t mem_total, energy;
    float resolution;
    uint32_t power_w, avg_power_w, energy_error, power_error, procs_error, lost_error;
    int lost, gpu, part;  /* gpu/part: socket index and partition id (0 = the gpu line) */
} proc_t;  /* one processor handle */
typedef struct { int gpu, part; uint32_t pid; char name[STR]; uint64_t mem, vram, gfx_ns; uint32_t cu; } pinfo_t;
typedef struct {
    uint32_t major, minor, release, init_error;
    int ngpus, nprocs, npinfo;
    int first[MAX_GPUS], count[MAX_GPUS];  /* processor index range per socket */
    proc_t procs[MAX_GPUS * 8];
    pinfo_t pinfo[MAX_PROCS];
} state_t;

static state_t S;
static int g_init = 0;
static char g_build[] = "fake";

static const char *field(const char *line, const char *key, char *out, size_t n) {
    /* value of "key=" in a TAB-separated record, or NULL */
    size_t kl = strlen(key);
    const char *p = line;
    while (p && *p) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t len = strcspn(v, "\t\n");
            if (len >= n) len = n - 1;
            memcpy(out, v, len);
            out[len] = 0;
            return out;
        }
        p = strchr(p, '\t');
        if (p) p++;
    }
    return NULL;
}

static uint64_t num(const char *line, const char *key, uint64_t dflt) {
    char buf[64];
    return field(line, key, buf, sizeof buf) ? strtoull(buf, NULL, 10) : dflt;
}

static int load(void) {
    /* re-read the whole state; 0 on success */
    static proc_t gpus[MAX_GPUS];
    static proc_t parts[MAX_GPUS * 7];
    int ng = 0, np = 0;
    const char *path = getenv("CARBONTRACK_FAKE_AMDSMI_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    memset(&S, 0, sizeof S);
    S.major = 7;
    if (!f) return 0;  /* no state: a machine without AMD GPUs */
    char line[4096], buf[STR];
    while (fgets(line, sizeof line, f)) {
        char *rest = strchr(line, '\t');
        if (line[0] == '#' || !rest) continue;
        *rest++ = 0;
        if (!strcmp(line, "lib") && field(rest, "version", buf, sizeof buf)) {
            sscanf(buf, "%u.%u.%u", &S.major, &S.minor, &S.release);
        } else if (!strcmp(line, "init")) {
            S.init_error = (uint32_t)num(rest, "error", 0);
        } else if ((!strcmp(line, "gpu") && ng < MAX_GPUS) || (!strcmp(line, "part") && np < MAX_GPUS * 7)) {
            int is_gpu = line[0] == 'g';
            proc_t *p = is_gpu ? &gpus[ng] : &parts[np];
            memset(p, 0, sizeof *p);
            field(rest, "bdf", p->bdf, STR);
            field(rest, "uuid", p->uuid, STR);
            if (!field(rest, "name", p->name, STR)) strcpy(p->name, "AMD Instinct MI300X");
            if (!field(rest, "partition", p->partition, sizeof p->partition)) strcpy(p->partition, "SPX");
            p->mem_total = num(rest, "mem_total", 0);
            p->energy = num(rest, "energy", 0);
            if (field(rest, "resolution", buf, sizeof buf)) p->resolution = strtof(buf, NULL);
            else p->resolution = 15.3f;
            p->power_w = (uint32_t)num(rest, "power_w", 0);
            p->avg_power_w = (uint32_t)num(rest, "avg_power_w", p->power_w);
            p->energy_error = (uint32_t)num(rest, "energy_error", is_gpu ? 0 : AMDSMI_STATUS_NOT_SUPPORTED);
            p->power_error = (uint32_t)num(rest, "power_error", 0);
            p->procs_error = (uint32_t)num(rest, "procs_error", 0);
            p->lost_error = (uint32_t)num(rest, "lost_error", AMDSMI_STATUS_FILE_ERROR);
            p->lost = field(rest, "state", buf, sizeof buf) && !strcmp(buf, "lost");
            p->gpu = is_gpu ? ng : (int)num(rest, "gpu", 0);
            if (is_gpu) ng++; else np++;
        } else if (!strcmp(line, "proc") && S.npinfo < MAX_PROCS) {
            pinfo_t *q = &S.pinfo[S.npinfo++];
            q->gpu = (int)num(rest, "gpu", 0);
            q->part = (int)num(rest, "part", 0);
            q->pid = (uint32_t)num(rest, "pid", 0);
            if (!field(rest, "name", q->name, STR)) strcpy(q->name, "python3");
            q->mem = num(rest, "mem", 0);
            q->vram = num(rest, "vram", q->mem);
            q->gfx_ns = num(rest, "gfx_ns", 0);
            q->cu = (uint32_t)num(rest, "cu", 0);
        }
    }
    fclose(f);
    /* processors: each gpu followed by its partitions, partition ids 0..n */
    for (int g = 0; g < ng; g++) {
        S.first[g] = S.nprocs;
        gpus[g].part = 0;
        S.procs[S.nprocs++] = gpus[g];
        int k = 1;
        for (int i = 0; i < np; i++) {
            if (parts[i].gpu != g) continue;
            parts[i].part = k++;
            parts[i].lost = gpus[g].lost;
            parts[i].lost_error = gpus[g].lost_error;
            if (!parts[i].name[0] || !strcmp(parts[i].name, "AMD Instinct MI300X")) strcpy(parts[i].name, gpus[g].name);
            strcpy(parts[i].partition, gpus[g].partition);
            S.procs[S.nprocs++] = parts[i];
        }
        S.count[g] = S.nprocs - S.first[g];
    }
    S.ngpus = ng;
    return 0;
}

/* handles are 1-based indices: sockets into S.first, processors into S.procs */
static proc_t *lookup(void *handle, amdsmi_status_t *st) {
    uintptr_t i = (uintptr_t)handle;
    if (!g_init) { *st = AMDSMI_STATUS_NOT_INIT; return NULL; }
    load();
    if (i == 0 || i > (uintptr_t)S.nprocs) { *st = AMDSMI_STATUS_INVAL; return NULL; }
    proc_t *p = &S.procs[i - 1];
    if (p->lost) { *st = p->lost_error; return NULL; }
    *st = AMDSMI_STATUS_SUCCESS;
    return p;
}

#define GET(p, h) amdsmi_status_t st_; proc_t *p = lookup((h), &st_); if (!p) return st_;

amdsmi_status_t amdsmi_init(uint64_t flags) {
    (void)flags;
    load();
    if (S.init_error) return S.init_error;
    g_init++;  /* reference counted, as amdsmi_init/amdsmi_shut_down pair up */
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_shut_down(void) {
    if (g_init > 0) g_init--;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_lib_version(amdsmi_version_t *v) {
    if (!v) return AMDSMI_STATUS_INVAL;
    load();
    v->major = S.major; v->minor = S.minor; v->release = S.release; v->build = g_build;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_socket_handles(uint32_t *count, void **handles) {
    if (!g_init) return AMDSMI_STATUS_NOT_INIT;
    if (!count) return AMDSMI_STATUS_INVAL;
    load();
    if (!handles) { *count = (uint32_t)S.ngpus; return AMDSMI_STATUS_SUCCESS; }
    uint32_t n = *count < (uint32_t)S.ngpus ? *count : (uint32_t)S.ngpus;
    for (uint32_t i = 0; i < n; i++) handles[i] = (void *)(uintptr_t)(i + 1);
    *count = n;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_handles(void *socket, uint32_t *count, void **handles) {
    if (!g_init) return AMDSMI_STATUS_NOT_INIT;
    if (!count) return AMDSMI_STATUS_INVAL;
    load();
    uintptr_t s = (uintptr_t)socket;
    if (s == 0 || s > (uintptr_t)S.ngpus) return AMDSMI_STATUS_INVAL;
    int first = S.first[s - 1], total = S.count[s - 1];
    if (!handles) { *count = (uint32_t)total; return AMDSMI_STATUS_SUCCESS; }
    uint32_t n = *count < (uint32_t)total ? *count : (uint32_t)total;
    for (uint32_t i = 0; i < n; i++) handles[i] = (void *)(uintptr_t)(first + (int)i + 1);
    *count = n;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_type(void *h, uint32_t *type) {
    GET(p, h); (void)p;
    *type = AMDSMI_PROCESSOR_TYPE_AMD_GPU;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_bdf(void *h, uint64_t *bdf) {
    GET(p, h);
    unsigned dom = 0, bus = 0, dev = 0, fn = 0;
    sscanf(p->bdf, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
    /* amdsmi_bdf_t: function_number:3, device_number:5, bus_number:8, domain_number:48 */
    *bdf = (uint64_t)(fn & 7) | ((uint64_t)(dev & 31) << 3) | ((uint64_t)(bus & 255) << 8)
           | ((uint64_t)dom << 16);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_uuid(void *h, uint32_t *len, char *buf) {
    GET(p, h);
    size_t need = strlen(p->uuid) + 1;
    if (!len || !buf) return AMDSMI_STATUS_INVAL;
    if (*len < need) { *len = (uint32_t)need; return AMDSMI_STATUS_INSUFFICIENT_SIZE; }
    memcpy(buf, p->uuid, need);
    *len = (uint32_t)need;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_asic_info(void *h, amdsmi_asic_info_t *info) {
    GET(p, h);
    memset(info, 0, sizeof *info);
    snprintf(info->market_name, sizeof info->market_name, "%s", p->name);
    info->vendor_id = 0x1002;
    snprintf(info->vendor_name, sizeof info->vendor_name, "Advanced Micro Devices Inc. [AMD/ATI]");
    info->device_id = 0x74a1;
    info->oam_id = 0xFFFFFFFFu;
    info->num_of_compute_units = 304;
    info->target_graphics_version = 0x942;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_memory_total(void *h, uint32_t type, uint64_t *total) {
    GET(p, h); (void)type;
    *total = p->mem_total;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_kfd_info(void *h, amdsmi_kfd_info_t *info) {
    GET(p, h);
    memset(info, 0, sizeof *info);
    info->kfd_id = 1000 + (uint64_t)(uintptr_t)h;
    info->node_id = (uint32_t)(uintptr_t)h;
    info->current_partition_id = (uint32_t)p->part;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_compute_partition(void *h, char *buf, uint32_t len) {
    GET(p, h);
    if (!buf || len == 0) return AMDSMI_STATUS_INVAL;
    snprintf(buf, len, "%s", p->partition);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_energy_count(void *h, uint64_t *acc, float *res, uint64_t *ts) {
    GET(p, h);
    if (p->energy_error) return p->energy_error;
    if (!acc) return AMDSMI_STATUS_INVAL;
    *acc = p->energy;
    if (res) *res = p->resolution;
    if (ts) *ts = 0;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_power_info(void *h, amdsmi_power_info_t *info) {
    GET(p, h);
    if (p->power_error) return p->power_error;
    memset(info, 0, sizeof *info);
    info->socket_power = p->power_w;
    info->current_socket_power = p->power_w;
    info->average_socket_power = p->avg_power_w;
    info->gfx_voltage = info->soc_voltage = info->mem_voltage = 0xFFFF;
    info->power_limit = 750;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_process_list(void *h, uint32_t *max, amdsmi_proc_info_t *list) {
    GET(p, h);
    if (p->procs_error) return p->procs_error;
    if (!max) return AMDSMI_STATUS_INVAL;
    uint32_t cap = *max, n = 0;
    for (int i = 0; i < S.npinfo; i++) {
        pinfo_t *q = &S.pinfo[i];
        if (q->gpu != p->gpu || q->part != p->part) continue;
        if (cap != 0 && n < cap && list) {
            amdsmi_proc_info_t *o = &list[n];
            memset(o, 0, sizeof *o);
            snprintf(o->name, sizeof o->name, "%s", q->name);
            o->pid = q->pid;
            o->mem = q->mem;
            o->engine_usage.gfx = q->gfx_ns;
            o->memory_usage.vram_mem = q->vram;
            o->cu_occupancy = q->cu;
        }
        n++;
    }
    *max = n;  /* always the number running */
    if (cap != 0 && n > cap) return AMDSMI_STATUS_OUT_OF_RESOURCES;
    return AMDSMI_STATUS_SUCCESS;
}

/* every other entry point the bindings bind at import: not supported by the fake */
#define X(name) amdsmi_status_t name(void) { return AMDSMI_STATUS_NOT_SUPPORTED; }
X(amdsmi_clean_gpu_local_data) X(amdsmi_cpu_apb_disable) X(amdsmi_cpu_apb_enable)
X(amdsmi_first_online_core_on_cpu_socket) X(amdsmi_free_name_value_pairs)
X(amdsmi_get_afids_from_cper) X(amdsmi_get_clk_freq) X(amdsmi_get_clock_info)
X(amdsmi_get_cpu_affinity_with_scope) X(amdsmi_get_cpu_cclk_limit)
X(amdsmi_get_cpu_core_boostlimit) X(amdsmi_get_cpu_core_current_freq_limit)
X(amdsmi_get_cpu_core_energy) X(amdsmi_get_cpu_cores_per_socket)
X(amdsmi_get_cpu_current_io_bandwidth) X(amdsmi_get_cpu_current_xgmi_bw)
X(amdsmi_get_cpu_ddr_bw) X(amdsmi_get_cpu_dimm_power_consumption)
X(amdsmi_get_cpu_dimm_temp_range_and_refresh_rate) X(amdsmi_get_cpu_dimm_thermal_sensor)
X(amdsmi_get_cpu_family) X(amdsmi_get_cpu_fclk_mclk) X(amdsmi_get_cpu_handles)
X(amdsmi_get_cpu_hsmp_driver_version) X(amdsmi_get_cpu_hsmp_proto_ver) X(amdsmi_get_cpu_model)
X(amdsmi_get_cpu_model_name) X(amdsmi_get_cpu_prochot_status)
X(amdsmi_get_cpu_pwr_svi_telemetry_all_rails) X(amdsmi_get_cpu_smu_fw_version)
X(amdsmi_get_cpu_socket_c0_residency) X(amdsmi_get_cpu_socket_count)
X(amdsmi_get_cpu_socket_current_active_freq_limit) X(amdsmi_get_cpu_socket_energy)
X(amdsmi_get_cpu_socket_freq_range) X(amdsmi_get_cpu_socket_lclk_dpm_level)
X(amdsmi_get_cpu_socket_power) X(amdsmi_get_cpu_socket_power_cap)
X(amdsmi_get_cpu_socket_power_cap_max) X(amdsmi_get_cpu_socket_temperature)
X(amdsmi_get_cpucore_handles) X(amdsmi_get_esmi_err_msg) X(amdsmi_get_fw_info)
X(amdsmi_get_gpu_accelerator_partition_profile)
X(amdsmi_get_gpu_accelerator_partition_profile_config) X(amdsmi_get_gpu_activity)
X(amdsmi_get_gpu_available_counters) X(amdsmi_get_gpu_bad_page_info)
X(amdsmi_get_gpu_bad_page_threshold) X(amdsmi_get_gpu_bdf_id) X(amdsmi_get_gpu_board_info)
X(amdsmi_get_gpu_busy_percent) X(amdsmi_get_gpu_cache_info)
X(amdsmi_get_gpu_compute_process_gpus) X(amdsmi_get_gpu_compute_process_info)
X(amdsmi_get_gpu_compute_process_info_by_pid) X(amdsmi_get_gpu_cper_entries)
X(amdsmi_get_gpu_driver_info) X(amdsmi_get_gpu_ecc_count) X(amdsmi_get_gpu_ecc_enabled)
X(amdsmi_get_gpu_ecc_status) X(amdsmi_get_gpu_event_notification) X(amdsmi_get_gpu_fan_rpms)
X(amdsmi_get_gpu_fan_speed) X(amdsmi_get_gpu_fan_speed_max) X(amdsmi_get_gpu_id)
X(amdsmi_get_gpu_mem_overdrive_level) X(amdsmi_get_gpu_memory_partition)
X(amdsmi_get_gpu_memory_partition_config) X(amdsmi_get_gpu_memory_reserved_pages)
X(amdsmi_get_gpu_memory_usage) X(amdsmi_get_gpu_metrics_header_info)
X(amdsmi_get_gpu_metrics_info) X(amdsmi_get_gpu_od_volt_curve_regions)
X(amdsmi_get_gpu_od_volt_info) X(amdsmi_get_gpu_overdrive_level)
X(amdsmi_get_gpu_pci_bandwidth) X(amdsmi_get_gpu_pci_replay_counter)
X(amdsmi_get_gpu_pci_throughput) X(amdsmi_get_gpu_perf_level) X(amdsmi_get_gpu_pm_metrics_info)
X(amdsmi_get_gpu_power_profile_presets) X(amdsmi_get_gpu_process_isolation)
X(amdsmi_get_gpu_ras_block_features_enabled) X(amdsmi_get_gpu_ras_feature_info)
X(amdsmi_get_gpu_reg_table_info) X(amdsmi_get_gpu_revision) X(amdsmi_get_gpu_subsystem_id)
X(amdsmi_get_gpu_subsystem_name) X(amdsmi_get_gpu_topo_numa_affinity)
X(amdsmi_get_gpu_total_ecc_count) X(amdsmi_get_gpu_vbios_info) X(amdsmi_get_gpu_vendor_name)
X(amdsmi_get_gpu_virtualization_mode) X(amdsmi_get_gpu_volt_metric) X(amdsmi_get_gpu_vram_info)
X(amdsmi_get_gpu_vram_usage) X(amdsmi_get_gpu_vram_vendor) X(amdsmi_get_gpu_xcd_counter)
X(amdsmi_get_gpu_xgmi_link_status) X(amdsmi_get_hsmp_metrics_table)
X(amdsmi_get_hsmp_metrics_table_version) X(amdsmi_get_link_metrics)
X(amdsmi_get_link_topology_nearest) X(amdsmi_get_minmax_bandwidth_between_processors)
X(amdsmi_get_pcie_info) X(amdsmi_get_power_cap_info) X(amdsmi_get_processor_count_from_handles)
X(amdsmi_get_processor_handle_from_bdf) X(amdsmi_get_processor_handles_by_type)
X(amdsmi_get_processor_info) X(amdsmi_get_soc_pstate) X(amdsmi_get_socket_info)
X(amdsmi_get_temp_metric) X(amdsmi_get_threads_per_core) X(amdsmi_get_utilization_count)
X(amdsmi_get_violation_status) X(amdsmi_get_xgmi_info) X(amdsmi_get_xgmi_plpd)
X(amdsmi_gpu_control_counter) X(amdsmi_gpu_counter_group_supported)
X(amdsmi_gpu_create_counter) X(amdsmi_gpu_destroy_counter) X(amdsmi_gpu_driver_reload)
X(amdsmi_gpu_read_counter) X(amdsmi_gpu_validate_ras_eeprom) X(amdsmi_gpu_xgmi_error_status)
X(amdsmi_init_gpu_event_notification) X(amdsmi_is_P2P_accessible)
X(amdsmi_is_gpu_power_management_enabled) X(amdsmi_reset_gpu) X(amdsmi_reset_gpu_fan)
X(amdsmi_reset_gpu_xgmi_error) X(amdsmi_set_clk_freq) X(amdsmi_set_cpu_core_boostlimit)
X(amdsmi_set_cpu_df_pstate_range) X(amdsmi_set_cpu_gmi3_link_width_range)
X(amdsmi_set_cpu_pcie_link_rate) X(amdsmi_set_cpu_pwr_efficiency_mode)
X(amdsmi_set_cpu_socket_boostlimit) X(amdsmi_set_cpu_socket_lclk_dpm_level)
X(amdsmi_set_cpu_socket_power_cap) X(amdsmi_set_cpu_xgmi_width)
X(amdsmi_set_gpu_accelerator_partition_profile) X(amdsmi_set_gpu_clk_limit)
X(amdsmi_set_gpu_clk_range) X(amdsmi_set_gpu_compute_partition)
X(amdsmi_set_gpu_event_notification_mask) X(amdsmi_set_gpu_fan_speed)
X(amdsmi_set_gpu_memory_partition) X(amdsmi_set_gpu_memory_partition_mode)
X(amdsmi_set_gpu_od_clk_info) X(amdsmi_set_gpu_od_volt_info) X(amdsmi_set_gpu_overdrive_level)
X(amdsmi_set_gpu_pci_bandwidth) X(amdsmi_set_gpu_perf_determinism_mode)
X(amdsmi_set_gpu_perf_level) X(amdsmi_set_gpu_power_profile)
X(amdsmi_set_gpu_process_isolation) X(amdsmi_set_power_cap) X(amdsmi_set_soc_pstate)
X(amdsmi_set_xgmi_plpd) X(amdsmi_status_code_to_string) X(amdsmi_stop_gpu_event_notification)
X(amdsmi_topo_get_link_type) X(amdsmi_topo_get_link_weight) X(amdsmi_topo_get_numa_node_number)
X(amdsmi_topo_get_p2p_status)
#ifndef FAKE_AMDSMI_OMIT_NEW
X(amdsmi_get_gpu_enumeration_info)
#endif
