/* bench/wake_protocol.c: the Event ping-pong of bench/wake_steps.py in C, once per variant of
 * the wait protocol (docs/format.md section 10.3 and the draft docs/wakeups-design.md), to see
 * what each design change is worth without any interpreter cost, next to the kernel's and the
 * hardware's floors in the same run.
 *
 *   futex       two processes, one shared word each way: bare FUTEX_WAIT / FUTEX_WAKE (floor)
 *   spin        the same, spinning on the words (the hardware floor)
 *   v3          the library's protocol today: robust mutex, words, FUTEX_WAKE before the unlock
 *   wake-after  the same, FUTEX_WAKE after the unlock (allowed by section 10.3 today)
 *   v4          the draft: wake after the unlock, join once, the sleepers word (a notifier wakes
 *               only a registered sleeper), a bounded adaptive spin on seq before sleeping
 *               (budget -s us: twice the last successful spin, halved after a failed one,
 *               the full budget again every 16th wait once it reached 0)
 *   v4-nospin   the same with no spin
 *
 * Each "segment" is a 4096-byte page of one MAP_SHARED mapping made before fork(), with the
 * robust process-shared error-checking mutex at 0x1C0 and the sixteen words at 0x200, as in a
 * real segment; shared futexes (no FUTEX_PRIVATE_FLAG). No /dev/shm name is created.
 *
 * Build: cc -O2 -o build/wake_protocol bench/wake_protocol.c -lpthread
 * Usage: build/wake_protocol [-n ROUNDS] [-s SPIN_US] [VARIANT ...]   (default: all)
 * Prints per variant the median, p99 and max of the round trip, in microseconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { SEQ, WAITERS, SIGNALS, FLAG, SETS, W5, SLEEPERS };
#define SLICE_NS 50000000L
#define WARMUP 200

/* budget: this process's adaptive spin budget for the object (docs/wakeups-design.md, 10.3
 * "Spinning"); retry: waits since the budget dropped to 0. */
typedef struct { pthread_mutex_t *m; volatile uint32_t *w; long budget; int retry; } event_t;
#define MIN_SPIN_NS 2000L

static int mode_after, mode_v4;
static long spin_ns;

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void fwait(volatile uint32_t *a, uint32_t v, long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    syscall(SYS_futex, a, FUTEX_WAIT, v, &ts, NULL, 0);
}

static void fwake(volatile uint32_t *a)
{
    syscall(SYS_futex, a, FUTEX_WAKE, 0x7FFFFFFF, NULL, NULL, 0);
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void lock(event_t *e)
{
    static const struct timespec past = {-1, 0};
    if (pthread_mutex_clocklock(e->m, CLOCK_MONOTONIC, &past) == 0)
        return;
    int rc = pthread_mutex_lock(e->m);
    if (rc) { fprintf(stderr, "lock: %d\n", rc); exit(2); }
}

static void unlock(event_t *e) { pthread_mutex_unlock(e->m); }

static uint32_t load(volatile uint32_t *a) { return __atomic_load_n(a, __ATOMIC_ACQUIRE); }

/* notify_all with the mutex held; returns 1 when a wake-up is due (issued by the caller). */
static int notify_all(event_t *e)
{
    volatile uint32_t *w = e->w;
    uint32_t k = w[WAITERS] - w[SIGNALS];
    if (!k)
        return 0;
    w[SIGNALS] += k;
    __atomic_store_n(&w[SEQ], w[SEQ] + 1, __ATOMIC_RELEASE);
    return mode_v4 ? w[SLEEPERS] > 0 : 1;
}

static void ev_set(event_t *e)
{
    lock(e);
    e->w[FLAG] = 1;
    e->w[SETS]++;
    int due = notify_all(e);
    if (due && !mode_after)
        fwake(&e->w[SEQ]);
    unlock(e);
    if (due && mode_after)
        fwake(&e->w[SEQ]);
}

static void ev_clear(event_t *e)
{
    lock(e);
    e->w[FLAG] = 0;
    unlock(e);
}

/* One wait (section 10.3) with the mutex held and the caller joined; returns with it held. */
static void wait_once(event_t *e)
{
    volatile uint32_t *w = e->w;
    uint32_t s = w[SEQ];
    int registered = 0;
    long budget = e->budget;
    if (mode_v4 && spin_ns && !budget && ++e->retry >= 16) {
        budget = spin_ns;                 /* every 16th wait tries the full budget again */
        e->retry = 0;
    }
    if (mode_v4 && !budget) {             /* no spin: register before releasing */
        w[SLEEPERS]++;
        registered = 1;
    }
    unlock(e);
    if (mode_v4 && budget) {
        long start = now_ns(), end = start + budget, t = start;
        for (int i = 0; load(&w[SEQ]) == s; i++) {
            cpu_pause();
            if ((i & 63) == 63 && (t = now_ns()) > end)
                break;
        }
        lock(e);
        if (load(&w[SEQ]) != s) {         /* success: twice what it took, within the bounds */
            t = 2 * (now_ns() - start);
            e->budget = t < MIN_SPIN_NS ? MIN_SPIN_NS : t > spin_ns ? spin_ns : t;
            goto locked;
        }
        e->budget = budget / 2 < MIN_SPIN_NS ? 0 : budget / 2;   /* failure: halve */
        w[SLEEPERS]++;
        registered = 1;
        unlock(e);
    }
    while (load(&w[SEQ]) == s)
        fwait(&w[SEQ], s, SLICE_NS);
    lock(e);
locked:
    if (registered)
        w[SLEEPERS]--;
    if (w[SIGNALS])
        w[SIGNALS]--;
    if (!mode_v4) {                       /* version 3: every wait joins and leaves */
        w[WAITERS]--;
        w[SIGNALS] = w[SIGNALS] < w[WAITERS] ? w[SIGNALS] : w[WAITERS];
    }
}

static void ev_wait(event_t *e)
{
    volatile uint32_t *w = e->w;
    lock(e);
    if (w[FLAG]) {
        unlock(e);
        return;
    }
    uint32_t g = w[SETS];
    if (mode_v4)
        w[WAITERS]++;                     /* join once */
    for (;;) {
        if (!mode_v4)
            w[WAITERS]++;
        wait_once(e);
        if (w[FLAG] || w[SETS] != g)
            break;
    }
    if (mode_v4) {                        /* leave */
        w[WAITERS]--;
        if (w[SIGNALS] > w[WAITERS]) w[SIGNALS] = w[WAITERS];
        if (w[SLEEPERS] > w[WAITERS]) w[SLEEPERS] = w[WAITERS];
    }
    unlock(e);
}

/* ---- the floors: one word per direction, incremented by the notifier */

static int floor_spin;

static void word_set(volatile uint32_t *a)
{
    __atomic_add_fetch(a, 1, __ATOMIC_SEQ_CST);
    if (!floor_spin)
        fwake(a);
}

static void word_wait(volatile uint32_t *a, uint32_t *seen)
{
    while (load(a) == *seen) {
        if (floor_spin)
            cpu_pause();
        else
            fwait(a, *seen, SLICE_NS);
    }
    *seen = load(a);
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static void run(const char *variant, int rounds, char *mem)
{
    int floor = !strcmp(variant, "futex") || !strcmp(variant, "spin");
    floor_spin = !strcmp(variant, "spin");
    mode_after = strcmp(variant, "v3") != 0;
    mode_v4 = !strncmp(variant, "v4", 2);
    long saved_spin = spin_ns;
    if (!strcmp(variant, "v4-nospin"))
        spin_ns = 0;
    memset(mem, 0, 2 * 4096);
    event_t ev[2];
    for (int i = 0; i < 2; i++) {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
        ev[i].m = (pthread_mutex_t *)(mem + i * 4096 + 0x1C0);
        pthread_mutex_init(ev[i].m, &a);
        pthread_mutexattr_destroy(&a);
        ev[i].w = (volatile uint32_t *)(mem + i * 4096 + 0x200);
        ev[i].budget = spin_ns;
        ev[i].retry = 0;
    }
    event_t *ping = &ev[0], *pong = &ev[1];
    int total = rounds + WARMUP;
    pid_t child = fork();
    if (child == 0) {
        uint32_t seen = 0;
        for (int r = 0; r < total; r++) {
            if (floor) {
                word_wait(&ping->w[SEQ], &seen);
                word_set(&pong->w[SEQ]);
            } else {
                ev_wait(ping);
                ev_clear(ping);
                ev_set(pong);
            }
        }
        _exit(0);
    }
    long *t = malloc(sizeof(long) * total);
    uint32_t seen = 0;
    for (int r = 0; r < total; r++) {
        long t0 = now_ns();
        if (floor) {
            word_set(&ping->w[SEQ]);
            word_wait(&pong->w[SEQ], &seen);
        } else {
            ev_set(ping);
            ev_wait(pong);
            ev_clear(pong);
        }
        t[r] = now_ns() - t0;
    }
    int status;
    waitpid(child, &status, 0);
    qsort(t + WARMUP, rounds, sizeof(long), cmp_long);
    long *v = t + WARMUP;
    printf("%-12s %10.2f %9.2f %9.1f\n", variant, v[rounds / 2] / 1e3,
           v[(int)(rounds * 0.99)] / 1e3, v[rounds - 1] / 1e3);
    fflush(stdout);
    free(t);
    spin_ns = saved_spin;
}

int main(int argc, char **argv)
{
    int rounds = 3000, opt;
    spin_ns = 50000;
    while ((opt = getopt(argc, argv, "n:s:")) != -1) {
        if (opt == 'n') rounds = atoi(optarg);
        else if (opt == 's') spin_ns = atol(optarg) * 1000L;
        else { fprintf(stderr, "usage: %s [-n ROUNDS] [-s SPIN_US] [VARIANT...]\n", argv[0]); return 2; }
    }
    static const char *all[] = {"futex", "spin", "v3", "wake-after", "v4-nospin", "v4"};
    char *mem = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    printf("Event ping-pong round trip in C, %d round trips per variant, spin budget %ld us, %ld CPUs online\n",
           rounds, spin_ns / 1000, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-12s %10s %9s %9s\n", "variant", "median us", "p99 us", "max us");
    if (optind < argc)
        for (int i = optind; i < argc; i++) run(argv[i], rounds, mem);
    else
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) run(all[i], rounds, mem);
    return 0;
}
