/* drain.c - `drain CONFIG HTTP_PORT PG_DATA_DIR REDIS_PIDFILE EVENTS STREAM=ID...`: the
 * benchmark's drain, from the daemon's start until /wait answers 200 for the last entry of
 * every stream, with the daemon's footprint over the same time.
 *
 * Owns the daemon it starts (stopped with SIGTERM at the end) and the /proc readings: the
 * daemon's peak RSS (VmHWM) and CPU (utime+stime), PostgreSQL's CPU (the postmaster with
 * its reaped children, plus every live backend) and Redis's. Prints one JSON line.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "testenv.h"

#define DRAIN_WAIT_MS 60000         /* one /wait; the daemon clamps longer ones */
#define DRAIN_DEADLINE_S (3 * 3600) /* give up after this */
#define DRAIN_RETRY_MS 5            /* while the daemon starts */

typedef struct Sample {
    double t;          /* monotonic seconds */
    double daemon_cpu; /* seconds */
    double pg_cpu;
    double redis_cpu;
} Sample;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- /proc ---- */

/* Fields 4 (ppid) and 14-17 (utime, stime, cutime, cstime) of /proc/PID/stat, in clock
 * ticks; false when the process is gone. */
static bool proc_stat(long pid, long *ppid, unsigned long long t[4])
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    const char *p;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name is in parentheses and may hold spaces: read after the last ')'. */
    if ((p = strrchr(buf, ')')) == NULL)
        return false;
    return sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", ppid,
                  &t[0], &t[1], &t[2], &t[3]) == 5;
}

/* CPU seconds of pid; with_children adds the children it has reaped. */
static double proc_cpu(long pid, bool with_children)
{
    unsigned long long t[4];
    long ppid;

    if (!proc_stat(pid, &ppid, t))
        return 0;
    return (double)(t[0] + t[1] + (with_children ? t[2] + t[3] : 0)) / (double)sysconf(_SC_CLK_TCK);
}

/* The postmaster, the backends it reaped, and every live child. */
static double cluster_cpu(long postmaster)
{
    double sum = proc_cpu(postmaster, true);
    DIR *d = opendir("/proc");
    struct dirent *de;

    while (d != NULL && (de = readdir(d)) != NULL) {
        unsigned long long t[4];
        long pid = atol(de->d_name), ppid;
        if (pid > 0 && pid != postmaster && proc_stat(pid, &ppid, t) && ppid == postmaster)
            sum += (double)(t[0] + t[1]) / (double)sysconf(_SC_CLK_TCK);
    }
    if (d != NULL)
        closedir(d);
    return sum;
}

/* A "Name:   1234 kB" line of /proc/PID/status, in KiB; -1 when absent. */
static long proc_status_kib(long pid, const char *name)
{
    char path[64], line[256];
    size_t len = strlen(name);
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, name, len) == 0 && line[len] == ':')
            kib = atol(line + len + 1);
    fclose(f);
    return kib;
}

/* The first line of a pid file (postmaster.pid and redis.pid both start with the pid). */
static long pidfile_pid(const char *path)
{
    char line[64] = "";
    FILE *f = fopen(path, "r");

    if (f == NULL || fgets(line, sizeof line, f) == NULL) {
        fprintf(stderr, "drain: cannot read pid file \"%s\"\n", path);
        exit(1);
    }
    fclose(f);
    return atol(line);
}

static void sample(Sample *s, long daemon, long postmaster, long redis)
{
    s->t = now_s();
    s->daemon_cpu = daemon > 0 ? proc_cpu(daemon, false) : 0;
    s->pg_cpu = cluster_cpu(postmaster);
    s->redis_cpu = proc_cpu(redis, false);
}

/* ---- waiting ---- */

/* Waits until /wait answers 200 for id on stream; false past the deadline. */
static bool wait_settled(int port, const char *stream, const char *id, double deadline)
{
    char path[256];

    snprintf(path, sizeof path, "/wait?stream=%s&id=%s&timeout_ms=%d", stream, id, DRAIN_WAIT_MS);
    while (now_s() < deadline) {
        int status = testenv_http_get(port, path, NULL);
        if (status == 200)
            return true;
        if (status != 408)
            testenv_sleep_ms(DRAIN_RETRY_MS); /* not listening yet, or the stream not known yet */
    }
    return false;
}

/* Dead letters summed over every read model and stream of GET /lag; -1 if unreadable. */
static long lag_dead_letters(int port)
{
    char *body = NULL;
    json_t *doc, *m, *s;
    size_t i, j;
    long dead = -1;

    if (testenv_http_get(port, "/lag", &body) == 200 && (doc = json_loads(body, 0, NULL)) != NULL) {
        dead = 0;
        json_array_foreach(json_object_get(doc, "readmodels"), i, m)
        {
            json_array_foreach(json_object_get(m, "streams"), j, s)
            {
                dead += (long)json_integer_value(json_object_get(s, "dead_letters"));
            }
        }
        json_decref(doc);
    }
    free(body);
    return dead;
}

/* What is read from the daemon before it is stopped. */
typedef struct Footprint {
    long rss_peak_kib, rss_end_kib, dead_letters;
} Footprint;

static void print_result(long events, const Sample *a, const Sample *b, const Footprint *fp,
                         int exit_code)
{
    double secs = b->t - a->t, cpu = b->daemon_cpu - a->daemon_cpu;
    double pg = b->pg_cpu - a->pg_cpu, redis = b->redis_cpu - a->redis_cpu;

    printf("{\"events\":%ld,\"seconds\":%.3f,\"events_per_second\":%.1f,"
           "\"rss_peak_kib\":%ld,\"rss_end_kib\":%ld,\"cpu_seconds\":%.2f,"
           "\"cpu_seconds_per_100k\":%.3f,\"pg_cpu_seconds\":%.2f,\"redis_cpu_seconds\":%.2f,"
           "\"cpu_vs_pg\":%.3f,\"dead_letters\":%ld,\"exit_code\":%d}\n",
           events, secs, (double)events / secs, fp->rss_peak_kib, fp->rss_end_kib, cpu,
           cpu * 100000.0 / (double)events, pg, redis, pg > 0 ? cpu / pg : 0.0, fp->dead_letters,
           exit_code);
}

static void usage(void)
{
    fprintf(stderr, "usage: drain CONFIG HTTP_PORT PG_DATA_DIR REDIS_PIDFILE EVENTS "
                    "STREAM=LAST_ID...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *config, *log_path;
    char pgpid_path[4096];
    int port;
    long events, postmaster, redis;
    pid_t pid;
    Sample a, b;
    Footprint fp;
    double deadline;

    if (argc < 7)
        usage();
    config = argv[1];
    port = atoi(argv[2]);
    snprintf(pgpid_path, sizeof pgpid_path, "%s/postmaster.pid", argv[3]);
    postmaster = pidfile_pid(pgpid_path);
    redis = pidfile_pid(argv[4]);
    events = atol(argv[5]);
    log_path = getenv("DRAIN_LOG") != NULL ? getenv("DRAIN_LOG") : "/dev/null";
    if (port <= 0 || events <= 0)
        usage();

    const char *args[] = {"run", "--config", config, NULL};
    sample(&a, 0, postmaster, redis);
    pid = testenv_spawn(args, log_path);
    deadline = a.t + DRAIN_DEADLINE_S;
    for (int i = 6; i < argc; i++) {
        char *stream = xstrdup(argv[i]), *id = strchr(stream, '=');
        if (id == NULL)
            usage();
        *id++ = '\0';
        if (!wait_settled(port, stream, id, deadline)) {
            fprintf(stderr, "drain: entry %s of stream \"%s\" not settled in time\n", id, stream);
            (void)testenv_kill(pid, SIGKILL);
            return 1;
        }
        free(stream);
    }
    sample(&b, pid, postmaster, redis);
    fp.rss_peak_kib = proc_status_kib(pid, "VmHWM");
    fp.rss_end_kib = proc_status_kib(pid, "VmRSS");
    fp.dead_letters = lag_dead_letters(port);
    print_result(events, &a, &b, &fp, testenv_kill(pid, SIGTERM));
    return 0;
}
