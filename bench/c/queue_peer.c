/* A third implementation of the SharedBridge queue (docs/format.md section 11), written from the
 * spec alone, in C: the floor of the queue benchmarks (bench/queue.py) and a producer/consumer
 * the cross-language suite runs against both libraries.
 *
 *   queue_peer create NAME CAPACITY [MAX_MESSAGES]   create a persistent queue (section 11.1, 11.2)
 *   queue_peer put NAME COUNT SIZE PRODUCER_ID        COUNT bytes messages (tag 1) of SIZE >= 16 bytes:
 *                                                     u64 producer id, u64 sequence number, then filler
 *   queue_peer get NAME COUNT                         COUNT messages; checks FIFO per producer and
 *                                                     prints {"got": N, "per_producer": {...}, "checksum": X}
 *   queue_peer complete NAME                          section 11.3 complete
 *   queue_peer floor COUNT SIZE                       the C floor: a child puts COUNT messages, the
 *                                                     parent gets them; prints messages/s
 *   queue_peer unlink NAME
 * Exit status: 0 ok, 1 error (message on stderr), 3 the queue was completed before COUNT.
 * Only tag-1 messages are written; get accepts any tag inline (it checks the record, not the
 * descriptor) and refuses out-of-line records (it is a floor, not a library).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HDR 0x200
#define CTL 256
#define MUTEX_OFF 0x1C0

typedef struct { volatile uint32_t seq, waiters, signals, sleepers; } block_t;
typedef struct {
    block_t r, w, j;
    uint32_t count, unfinished, completed, reserved;
    uint64_t head, read, tail, puts, gets;
    uint8_t reserved2[24];
    uint32_t max_messages, flavour;
} control_t;

typedef struct {
    uint8_t *base;
    size_t size;
    control_t *c;
    uint8_t *ring;
    uint64_t cap;
    uint32_t max_messages;
    pthread_mutex_t *mutex;
    int wake_r, wake_w;  /* wake-ups due after the release (section 10.3, notify) */
} queue_t;

static void die(const char *what) { fprintf(stderr, "queue_peer: %s: %s\n", what, strerror(errno)); exit(1); }
static void fail(const char *what) { fprintf(stderr, "queue_peer: %s\n", what); exit(1); }

static uint32_t crc32_ieee(const uint8_t *p, size_t n, uint32_t crc) {
    crc = ~crc;
    while (n--) { crc ^= *p++; for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1)); }
    return ~crc;
}

static uint64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec; }

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* ---- the mutex (section 7.3) and the repair after a recovery (section 11.3) ---------------- */
static void repair(queue_t *q);
static void lock(queue_t *q) {
    int rc = pthread_mutex_lock(q->mutex);
    if (rc == EOWNERDEAD) {
        uint8_t *ctl = q->base;
        uint64_t rec; memcpy(&rec, ctl + 0x188, 8); rec++; memcpy(ctl + 0x188, &rec, 8);
        uint32_t pid = (uint32_t)getpid(); memcpy(ctl + 0x190, &pid, 4);
        repair(q);
        pthread_mutex_consistent(q->mutex);
    } else if (rc != 0) { errno = rc; die("pthread_mutex_lock"); }
}
static void futex_wake(volatile uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE, 0x7FFFFFFF, NULL, NULL, 0); }
static void unlock(queue_t *q) {
    pthread_mutex_unlock(q->mutex);
    if (q->wake_r) { q->wake_r = 0; futex_wake(&q->c->r.seq); }
    if (q->wake_w) { q->wake_w = 0; futex_wake(&q->c->w.seq); }
}

/* ---- wait blocks (section 10.3, no spinning) ------------------------------------------------ */
static void check_block(block_t *b) { if (b->signals > b->waiters || b->sleepers > b->waiters) fail("corrupt queue: wait block words"); }
static void join(block_t *b) { check_block(b); b->waiters++; }
static void leave(block_t *b) {
    if (b->waiters) b->waiters--;
    if (b->sleepers > b->waiters) b->sleepers = b->waiters;
    if (b->signals > b->waiters) b->signals = b->waiters;
}
static int notify(block_t *b, uint32_t n) {  /* returns 1 if a wake-up is due */
    uint32_t free_ = b->waiters - b->signals, k = n < free_ ? n : free_;
    if (!k) return 0;
    b->signals += k; b->seq++;
    return b->sleepers > 0;
}
static void wait_block(queue_t *q, block_t *b) {  /* joined, mutex held; returns with it held */
    uint32_t s = b->seq;
    b->sleepers++;
    unlock(q);
    struct timespec slice = {0, 50 * 1000000};
    while (b->seq == s) {
        syscall(SYS_futex, &b->seq, FUTEX_WAIT, s, &slice, NULL, 0);
        if (b->seq == s) break;  /* one slice, then look at the words again */
    }
    lock(q);
    if (b->sleepers) b->sleepers--;
    if (b->signals) b->signals--;
}

/* ---- records (section 11.3) ------------------------------------------------------------------ */
static uint8_t *at(queue_t *q, uint64_t pos) { return q->ring + (pos & (q->cap - 1)); }

static uint32_t record_size(queue_t *q, uint64_t pos, uint64_t limit) {
    uint8_t *r = at(q, pos);
    uint32_t size = rd32(r), state = r[4];
    uint64_t off = pos & (q->cap - 1);
    if (size < 8 || size % 8 || off + size > q->cap || pos + size > limit) fail("corrupt queue: record size");
    if (state < 1 || state > 4) fail("corrupt queue: record state");
    if (state != 4) {
        uint32_t dl = rd32(r + 8);
        uint64_t data = rd64(r + 24);
        if (size < 32 || r[5] < 1 || r[5] > 6 || (r[6] & ~1u) || dl > size) fail("corrupt queue: record header");
        if (!(r[6] & 1) && (uint64_t)size != 32 + ((dl + 7ull) & ~7ull) + ((data + 7) & ~7ull)) fail("corrupt queue: record lengths");
    }
    return size;
}

static void check_words(queue_t *q) {
    control_t *c = q->c;
    if (!(c->head <= c->read && c->read <= c->tail) || c->tail - c->head > q->cap ||
        (c->head | c->read | c->tail) % 8 || c->count > q->max_messages ||
        32ull * c->count > c->tail - c->read || c->completed > 1)
        fail("corrupt queue: control words");
}

static int taker_gone(uint8_t *r) {
    uint32_t pid = rd32(r + 12);
    uint64_t start = rd64(r + 16);
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = open(path, O_RDONLY);
    if (pid == 0 || fd < 0) return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1); close(fd);
    if (n <= 0) return 1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 1;
    char state; unsigned long long st = 0; int field = 3;
    state = p[2];
    if (state == 'Z' || state == 'X') return 1;
    for (p += 2; *p && field < 22; p++) if (*p == ' ') field++;
    st = strtoull(p, NULL, 10);
    return start != 0 && st != start;
}

static void advance_head(queue_t *q) {
    control_t *c = q->c;
    while (c->head < c->read) {
        uint8_t *r = at(q, c->head);
        uint32_t size = record_size(q, c->head, c->read);
        if (r[4] == 2 && !taker_gone(r)) break;
        c->head += size;
    }
}

static void repair(queue_t *q) {
    control_t *c = q->c;
    check_words(q);
    uint32_t n = 0;
    for (uint64_t p = c->read; p < c->tail; p += record_size(q, p, c->tail)) if (at(q, p)[4] == 1) n++;
    c->count = n;
    if (c->unfinished < n) c->unfinished = n;
    advance_head(q);
}

static void put(queue_t *q, const uint8_t *data, uint32_t len) {
    control_t *c = q->c;
    uint32_t n = 32 + ((len + 7) & ~7u);
    if (n > q->cap / 2) fail("message too large for this floor (out of line is not implemented)");
    lock(q);
    int joined = 0;
    for (;;) {
        check_words(q);
        if (c->completed) { if (joined) leave(&c->w); unlock(q); fprintf(stderr, "queue_peer: completed\n"); exit(3); }
        uint64_t o = c->tail & (q->cap - 1), pad = o + n > q->cap ? q->cap - o : 0;
        if (c->count < q->max_messages && q->cap - (c->tail - c->head) >= pad + n) {
            if (pad) { uint32_t h[2] = {(uint32_t)pad, 4}; memcpy(at(q, c->tail), h, 8); }
            uint8_t *r = at(q, c->tail + pad);
            uint32_t h[8] = {n, 1 | (1 << 8), 0, 0, 0, 0, len, 0};
            memcpy(r, h, 32);
            memcpy(r + 32, data, len);
            if (n - 32 > len) memset(r + 32 + len, 0, n - 32 - len);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            c->tail += pad + n;                       /* the commit */
            c->count++; c->unfinished++; c->puts++;
            if (joined) leave(&c->w);
            q->wake_r |= notify(&c->r, 1);
            unlock(q);
            return;
        }
        advance_head(q);
        if (!joined) { join(&c->w); joined = 1; continue; }
        wait_block(q, &c->w);
    }
}

/* Copies the next message into buf (cap bytes); returns its length, or -1 when completed. */
static long get(queue_t *q, uint8_t *buf, size_t bufcap) {
    control_t *c = q->c;
    lock(q);
    int joined = 0;
    for (;;) {
        check_words(q);
        while (c->read < c->tail) {
            uint8_t *r = at(q, c->read);
            if (r[4] != 3 && r[4] != 4) break;
            c->read += record_size(q, c->read, c->tail);
        }
        if (c->read < c->tail) {
            uint8_t *r = at(q, c->read);
            uint32_t size = record_size(q, c->read, c->tail);
            if (r[4] != 1) fail("corrupt queue: a record after read is not ready");
            if (r[6] & 1) fail("out-of-line message: not implemented by this floor");
            uint64_t len = rd64(r + 24);
            uint32_t dl = rd32(r + 8);
            if (len > bufcap) fail("message larger than the buffer");
            memcpy(buf, r + 32 + ((dl + 7) & ~7u), len);
            r[4] = 3; c->read += size; c->count--; c->gets++;
            uint64_t h = c->head;
            advance_head(q);
            if (joined) leave(&c->r);
            if (c->head != h && c->w.waiters > c->w.signals) q->wake_w |= notify(&c->w, c->w.waiters);
            unlock(q);
            return (long)len;
        }
        if (c->completed) { if (joined) leave(&c->r); unlock(q); return -1; }
        if (!joined) { join(&c->r); joined = 1; continue; }
        wait_block(q, &c->r);
    }
}

/* ---- segments (sections 1, 3, 6) --------------------------------------------------------------- */
static queue_t map_queue(int fd, size_t size) {
    queue_t q = {0};
    q.base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (q.base == MAP_FAILED) die("mmap");
    q.size = size;
    q.c = (control_t *)(q.base + HDR);
    q.ring = q.base + HDR + CTL;
    q.cap = size - HDR - CTL;
    q.mutex = (pthread_mutex_t *)(q.base + MUTEX_OFF);
    return q;
}

static queue_t attach(const char *name) {
    char path[300]; snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR, 0);
    if (fd < 0) die(name);
    struct stat st; if (fstat(fd, &st)) die("fstat");
    uint8_t h[512];
    if (st.st_size < 512 || pread(fd, h, 512, 0) != 512) fail("not a queue (too small)");
    if (memcmp(h, "SHBRIDGE", 8) || h[0x10] != 8) fail("not a queue segment");
    if (rd32(h + 0x180) == 0) fail("still initializing");
    uint16_t compat; memcpy(&compat, h + 0x0A, 2);
    if (compat > 6) fail("unsupported format version");
    uint64_t count = rd64(h + 0x18), cap = count - CTL;
    if (h[0x11] != 'B' || rd32(h + 0x14) != 1 || rd64(h + 0x20) != HDR || rd64(h + 0x28) != count ||
        cap < 4096 || cap > (1ull << 40) || (cap & (cap - 1)) || h[0x30] != 1 || h[0x31] != 1 || h[0x38] != 2 ||
        (uint64_t)st.st_size < HDR + count)
        fail("corrupt queue header");
    uint8_t hc[512]; memcpy(hc, h, 512);
    if (crc32_ieee(hc, 0x180, 0) != rd32(h + 0x184)) fail("corrupt queue header (crc)");
    queue_t q = map_queue(fd, HDR + count);
    close(fd);
    q.max_messages = q.c->max_messages;     /* the private copy (section 11.2) */
    if (q.max_messages == 0 || q.max_messages > 0x7FFFFFFF || q.c->flavour > 3) fail("corrupt queue: immutable words");
    return q;
}

static void create(const char *name, uint64_t cap, uint32_t max_messages) {
    char path[300]; snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) die(name);
    if (fchmod(fd, 0600) || ftruncate(fd, HDR + CTL + cap)) die("ftruncate");
    queue_t q = map_queue(fd, HDR + CTL + cap);
    close(fd);
    uint8_t *h = q.base;
    uint16_t v6 = 6; uint32_t u; uint64_t x;   /* format version 6 (section 11.1) */
    memcpy(h + 0x08, &v6, 2); memcpy(h + 0x0A, &v6, 2);
    u = HDR; memcpy(h + 0x0C, &u, 4);
    h[0x10] = 8; h[0x11] = 'B';
    u = 1; memcpy(h + 0x14, &u, 4);
    x = CTL + cap; memcpy(h + 0x18, &x, 8);
    x = HDR; memcpy(h + 0x20, &x, 8);
    x = CTL + cap; memcpy(h + 0x28, &x, 8);
    h[0x30] = 1; h[0x31] = 1; uint16_t ls = sizeof(pthread_mutex_t); memcpy(h + 0x32, &ls, 2);
    u = MUTEX_OFF; memcpy(h + 0x34, &u, 4);
    h[0x38] = 2; h[0x39] = 2;  /* error-checking lock; lifetime persistent */
    u = (uint32_t)getpid(); memcpy(h + 0x44, &u, 4);
    struct timespec rt; clock_gettime(CLOCK_REALTIME, &rt);
    int64_t ns = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec; memcpy(h + 0x50, &ns, 8);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(h, "SHBRIDGE", 8);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(q.mutex, &a);
    q.c->max_messages = max_messages ? max_messages : 0x7FFFFFFF;
    u = crc32_ieee(h, 0x180, 0); memcpy(h + 0x184, &u, 4);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    u = 1; __atomic_store_n((uint32_t *)(h + 0x180), u, __ATOMIC_RELEASE);
    munmap(q.base, q.size);
}

static int consume(queue_t *q, long count, int print) {
    uint8_t *buf = malloc(q->cap);
    uint64_t ids[64] = {0}, next[64] = {0}, checksum = 0; int nids = 0; long got = 0; int rc = 0;
    for (; got < count; got++) {
        long len = get(q, buf, q->cap);
        if (len < 0) { rc = 3; break; }
        if (len < 16) fail("message shorter than 16 bytes");
        uint64_t id = rd64(buf), seq = rd64(buf + 8);
        int i = 0;
        while (i < nids && ids[i] != id) i++;
        if (i == nids) { if (nids == 64) fail("more than 64 producers"); ids[nids++] = id; }
        if (seq != next[i]) { fprintf(stderr, "queue_peer: producer %llu: got %llu, expected %llu\n", (unsigned long long)id, (unsigned long long)seq, (unsigned long long)next[i]); exit(1); }
        next[i]++;
        checksum = checksum * 31 + seq + id;
    }
    if (print) {
        printf("{\"got\": %ld, \"per_producer\": {", got);
        for (int i = 0; i < nids; i++) printf("%s\"%llu\": %llu", i ? ", " : "", (unsigned long long)ids[i], (unsigned long long)next[i]);
        printf("}, \"checksum\": %llu}\n", (unsigned long long)checksum);
    }
    free(buf);
    return rc;
}

static void produce(queue_t *q, long count, uint32_t size, uint64_t id) {
    uint8_t *msg = calloc(1, size);
    memcpy(msg, &id, 8);
    for (uint64_t s = 0; s < (uint64_t)count; s++) { memcpy(msg + 8, &s, 8); put(q, msg, size); }
    free(msg);
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "create")) { create(argv[2], strtoull(argv[3], 0, 10), argc > 4 ? (uint32_t)strtoul(argv[4], 0, 10) : 0); return 0; }
    if (argc == 6 && !strcmp(argv[1], "put")) { queue_t q = attach(argv[2]); produce(&q, atol(argv[3]), (uint32_t)atoi(argv[4]), strtoull(argv[5], 0, 10)); return 0; }
    if (argc == 4 && !strcmp(argv[1], "get")) { queue_t q = attach(argv[2]); return consume(&q, atol(argv[3]), 1); }
    if (argc == 3 && !strcmp(argv[1], "complete")) {
        queue_t q = attach(argv[2]); lock(&q); q.c->completed = 1;
        q.wake_r |= notify(&q.c->r, q.c->r.waiters); q.wake_w |= notify(&q.c->w, q.c->w.waiters); unlock(&q); return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "unlink")) { char p[300]; snprintf(p, sizeof p, "/%s", argv[2]); return shm_unlink(p) ? 1 : 0; }
    if (argc == 4 && !strcmp(argv[1], "floor")) {
        long count = atol(argv[2]); uint32_t size = (uint32_t)atoi(argv[3]);
        char name[64]; snprintf(name, sizeof name, "sbbench_cfloor_%d", (int)getpid());
        create(name, 1 << 20, 0);
        queue_t q = attach(name);
        uint64_t t0 = now_ns();
        pid_t pid = fork();
        if (pid == 0) { produce(&q, count, size, 1); _exit(0); }
        int rc = consume(&q, count, 0);
        uint64_t t1 = now_ns();
        waitpid(pid, NULL, 0);
        char p[80]; snprintf(p, sizeof p, "/%s", name); shm_unlink(p);
        printf("{\"messages\": %ld, \"size\": %u, \"seconds\": %.6f, \"per_second\": %.0f}\n", count, size, (t1 - t0) / 1e9, count / ((t1 - t0) / 1e9));
        return rc;
    }
    fprintf(stderr, "usage: queue_peer create|put|get|complete|floor|unlink ...\n");
    return 2;
}
