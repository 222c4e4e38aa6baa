/* The floors of a wake-up between two processes (bench/wakeup.py, docs/benchmarks.md section 7).

   Usage: wake_floor futex|spin ROUND_TRIPS WARMUP PATIENCE_S
   Forks; parent and child ping-pong on one 32-bit word in a MAP_SHARED page, the parent timing
   each round trip (it sets the word to 1 and waits for 0; the child waits for 1 and sets 0):
     futex  bare FUTEX_WAIT / FUTEX_WAKE on the word (no FUTEX_PRIVATE_FLAG, as on a shared
            segment), a wake on every hand-over: the kernel's floor for a sleeping waiter;
     spin   both sides spin on the word, no system call: the hardware's floor (one cache line
            bouncing between two CPUs).
   Prints the ROUND_TRIPS measured round trips (after WARMUP unmeasured ones) in nanoseconds on one
   line, space-separated; exit 0. A side that sees no progress for PATIENCE_S seconds, or whose
   peer has died, gives up with exit 1 (the child also dies with its parent: PR_SET_PDEATHSIG), and
   alarm() ends both after 4 x PATIENCE_S plus 10 ms per round trip whatever happens.
   When SB_WAKE_SERVER_CPU is set (bench/wakeup.py's two-cpus regime, the parent already pinned to
   CPU a), the forked echo side pins itself to that CPU before its first wait, for both floors. Build: cc -O2 -o wake_floor wake_floor.c */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int use_futex;
static double patience_s;
static pid_t peer;           /* the child, seen from the parent; 0 in the child (it checks getppid) */
static pid_t parent_at_fork;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int peer_alive(void)
{
    if (peer == 0)
        return getppid() == parent_at_fork;
    return waitpid(peer, NULL, WNOHANG) == 0;
}

static void give_up(const char *why)
{
    fprintf(stderr, "wake_floor (%s side, %s): %s\n", peer ? "timing" : "echo",
            use_futex ? "futex" : "spin", why);
    if (peer)
        kill(peer, SIGKILL);
    _exit(1);
}

/* Waits until *word == want. futex: FUTEX_WAIT while it holds the other value, in slices of
   100 ms; spin: a bare load loop, the clock read every 4096 loads. */
static void wait_for(atomic_uint *word, unsigned want)
{
    int64_t start = now_ns(), limit = (int64_t)(patience_s * 1e9);
    unsigned spins = 0;
    while (atomic_load_explicit(word, memory_order_acquire) != want) {
        if (use_futex) {
            struct timespec slice = {0, 100 * 1000 * 1000};
            long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, 1u - want, &slice, NULL, 0);
            if (rc == 0 || errno == EAGAIN || errno == EINTR)
                continue;
            if (errno != ETIMEDOUT)
                give_up(strerror(errno));
        } else if (++spins % 4096 != 0) {
            continue;
        }
        if (!peer_alive())
            give_up("the other process has died");
        if (now_ns() - start > limit)
            give_up("no progress within the patience");
    }
}

static void hand_over(atomic_uint *word, unsigned value)
{
    atomic_store_explicit(word, value, memory_order_release);
    if (use_futex)
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "futex") && strcmp(argv[1], "spin"))) {
        fprintf(stderr, "usage: wake_floor futex|spin ROUND_TRIPS WARMUP PATIENCE_S\n");
        return 2;
    }
    use_futex = strcmp(argv[1], "futex") == 0;
    long n = atol(argv[2]), warmup = atol(argv[3]);
    patience_s = atof(argv[4]);
    if (n < 1 || warmup < 0 || patience_s <= 0) {
        fprintf(stderr, "wake_floor: ROUND_TRIPS >= 1, WARMUP >= 0, PATIENCE_S > 0\n");
        return 2;
    }
    alarm((unsigned)(4 * patience_s + (double)(n + warmup) / 100) + 1);
    /* One page: the word sits alone on its cache line. */
    atomic_uint *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int64_t *times = malloc(sizeof(int64_t) * (size_t)n);
    if (word == MAP_FAILED || times == NULL) {
        perror("wake_floor: mmap/malloc");
        return 1;
    }
    atomic_init(word, 0);
    parent_at_fork = getpid();
    pid_t child = fork();
    if (child < 0) {
        perror("wake_floor: fork");
        return 1;
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        peer = 0;
        const char *server_cpu = getenv("SB_WAKE_SERVER_CPU");
        if (server_cpu != NULL && *server_cpu != '\0') {
            char *end;
            long cpu = strtol(server_cpu, &end, 10);
            cpu_set_t set;
            CPU_ZERO(&set);
            if (*end != '\0' || cpu < 0 || cpu >= CPU_SETSIZE) {
                fprintf(stderr, "wake_floor: SB_WAKE_SERVER_CPU=%s is not a CPU number\n", server_cpu);
                _exit(1);
            }
            CPU_SET((int)cpu, &set);
            if (sched_setaffinity(0, sizeof set, &set) != 0) {
                perror("wake_floor: sched_setaffinity(SB_WAKE_SERVER_CPU)");
                _exit(1);
            }
        }
        if (!peer_alive())
            _exit(1);
        for (long i = 0; i < n + warmup; i++) {
            wait_for(word, 1);
            hand_over(word, 0);
        }
        _exit(0);
    }
    peer = child;
    for (long i = 0; i < n + warmup; i++) {
        int64_t t0 = now_ns();
        hand_over(word, 1);
        wait_for(word, 0);
        if (i >= warmup)
            times[i - warmup] = now_ns() - t0;
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "wake_floor: the echo side failed (status %d)\n", status);
        return 1;
    }
    for (long i = 0; i < n; i++)
        printf(i ? " %lld" : "%lld", (long long)times[i]);
    printf("\n");
    return 0;
}
