/* sharedbridge._platform._fastlock: the optional compiled fast path of the shared lock.
 *
 * What it does, and nothing more (docs/format.md sections 7.2 and 7.3):
 *   - the kind check of the mutex's __kind word before the non-blocking attempt,
 *   - the non-blocking acquire pthread_mutex_clocklock(CLOCK_MONOTONIC, {-1, 0})
 *     (never pthread_mutex_trylock),
 *   - the unlock, whose result is always checked,
 *   - the per-thread ownership record (owner thread, recursion depth) of the lock object,
 *   - the accessors of the synchronized wrappers (locked_getitem, locked_setitem,
 *     locked_attr): one operation on the wrapper's object under its lock.
 * Everything else (waiting in slices, the stale-owner check, EOWNERDEAD recovery,
 * not-recoverable, every error message) is the Python code of robust_mutex.py, called
 * through the lock object's slow-path methods (lock_core.LockSlowPaths, shared_lock.py):
 *   _check_kind(), _finish_acquire(rc, block, timeout), _contended(rc),
 *   _unlock_failed(rc), _reacquire(block, timeout), _not_owner().
 * lock_core.py holds the pure-Python twin of this file (the ctypes path: PyLockCore and
 * _FAST_PATH): the two must behave the same; python/tests run on both
 * (SHAREDBRIDGE_NO_ACCEL=1).
 *
 * No call here blocks or waits, so the GIL is held throughout, as with ctypes.PyDLL,
 * except spin() and futex_wait() below and WaitCore's spin and FUTEX_WAIT, which release it.
 *
 * The deferred wake-up (docs/format.md section 10.3, notify): a LockCore has one pending
 * wake slot (the address of a synchronization segment's seq word and a reference that
 * keeps that mapping alive), set by _defer_wake(address, ref) under the lock and issued
 * (FUTEX_WAKE) right after the outermost pthread_mutex_unlock: release(), _flush_wake()
 * (called by the condition wait's _release_save) and the accessors' unlock.
 *
 * WaitCore (below, "WaitCore") is the wait/notify path of the waiting objects (section
 * 10.3): the words' steps and the event, semaphore and condition operations as single
 * calls; its twin is sync.py's _PyWaitCore and kind methods (the ctypes path).
 *
 * It also holds chain_resend()/chain_stop(), the re-send that makes the Python-level
 * signal handler of exit_cleanup.py run even when the main thread is blocked in a C call
 * (see "signal re-send" below and docs/api.md, "Endings").
 *
 * And the system calls of attaching a segment (see "attach" below): attach_read() opens
 * the object, fstats it and reads the first bytes of its header in one call, map_shared()
 * maps a descriptor; every rule (what the fstat and the bytes must be, what is mapped) is
 * attach_checks.py's, applied in Python to what these return.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#ifndef Py_LIMITED_API
#include <structmember.h>
#endif
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <errno.h>
#include <string.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/file.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#define INTERFACE 10    /* lock_core.py refuses a module built from another version */

/* The stable ABI (Py_LIMITED_API=0x030C0000, an abi3 module for CPython 3.12+:
 * scripts/build_fastlock.py --limited-api): the same code with the limited API's functions
 * for the macros, and heap types made from specs in PyInit (the TYPE_SPEC blocks) for the
 * static types. The wheels are built without it (docs/api.md, "Wheels", says why). */
#ifdef Py_LIMITED_API
#if Py_LIMITED_API + 0 < 0x030C0000
#error "_fastlock needs the limited API of CPython 3.12 (vectorcall types, the buffer protocol)"
#endif
#define PyTuple_GET_SIZE(t) PyTuple_Size(t)
#define PyTuple_GET_ITEM(t, i) PyTuple_GetItem((t), (i))
#define PyList_GET_SIZE(l) PyList_Size(l)
#define PyList_GET_ITEM(l, i) PyList_GetItem((l), (i))
#define PyList_SET_ITEM(l, i, v) PyList_SetItem((l), (i), (v))
#define PyBytes_AS_STRING(b) PyBytes_AsString(b)
#define PyBytes_GET_SIZE(b) PyBytes_Size(b)
#define Py_XSETREF(dst, src) do { PyObject *_old = (PyObject *)(dst); (dst) = (src); Py_XDECREF(_old); } while (0)
#define PyObject_CallMethodNoArgs(o, n) PyObject_CallMethodObjArgs((o), (n), NULL)
#define PyObject_CallMethodOneArg(o, n, a) PyObject_CallMethodObjArgs((o), (n), (a), NULL)
#define T_OBJECT Py_T_OBJECT_EX
#define T_PYSSIZET Py_T_PYSSIZET
#define READONLY Py_READONLY
static PyTypeObject *LockCoreTypeP, *LockedOpTypeP, *LockedAttrTypeP, *WaitCoreTypeP, *QueueCoreTypeP;
#define LockCoreType (*LockCoreTypeP)
#define LockedOpType (*LockedOpTypeP)
#define LockedAttrType (*LockedAttrTypeP)
#define WaitCoreType (*WaitCoreTypeP)
#define QueueCoreType (*QueueCoreTypeP)
static PyObject *g_method_type;     /* types.MethodType (PyMethod_New is not in the limited API) */
#define PyMethod_New(f, self) PyObject_CallFunctionObjArgs(g_method_type, (f), (self), NULL)
/* A heap type's instance holds a reference to its type. */
#define TP_FREE(self) do { PyTypeObject *_tp = Py_TYPE((PyObject *)(self)); \
    ((freefunc)PyType_GetSlot(_tp, Py_tp_free))((PyObject *)(self)); Py_DECREF(_tp); } while (0)
#else
#define TP_FREE(self) Py_TYPE(self)->tp_free((PyObject *)(self))
#endif

static const struct timespec PAST = {-1, 0};

/* ------------------------------------------------------------------ futex and spin */
/* Shared futexes only (no FUTEX_PRIVATE_FLAG), relative timeouts on CLOCK_MONOTONIC
 * (section 10.3); the same calls as futex.py makes through ctypes. */
#define SB_FUTEX_WAIT 0
#define SB_FUTEX_WAKE 1

#if defined(__x86_64__) || defined(__i386__)
#define CPU_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_PAUSE() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_PAUSE() __asm__ __volatile__("" ::: "memory")
#endif

static void wake_all(uint32_t *addr)
{
#if defined(__linux__) && defined(SYS_futex)
    syscall(SYS_futex, addr, SB_FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#endif
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Read *addr until it differs from value or budget_ns pass (a pause between reads, the
 * clock every 64 reads): the time spent when it changed, -1 when the budget ran out. */
static long long spin_on(const uint32_t *addr, uint32_t value, long long budget_ns)
{
    long long start = now_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(addr, __ATOMIC_ACQUIRE) != value)
                return now_ns() - start;
            CPU_PAUSE();
        }
        if (now_ns() - start >= budget_ns)
            return -1;
    }
}

static int address_arg(PyObject *obj, uint32_t **out)
{
    void *p = PyLong_AsVoidPtr(obj);
    if (!p) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "a null address");
        return -1;
    }
    *out = p;
    return 0;
}

/* The arguments (address, u32 value, nanoseconds) of spin() and futex_wait(). */
static int word_args(const char *usage, PyObject *const *args, Py_ssize_t nargs,
                     uint32_t **addr, uint32_t *value, long long *ns)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (address_arg(args[0], addr) < 0)
        return -1;
    unsigned long v = PyLong_AsUnsignedLong(args[1]);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *value = (uint32_t)v;
    *ns = PyLong_AsLongLong(args[2]);
    if (*ns == -1 && PyErr_Occurred())
        return -1;
    if (*ns < 0)
        *ns = 0;
    return 0;
}

static PyObject *mod_spin(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t *addr, value;
    long long budget, spent;
    if (word_args("spin(address, value, budget_ns)", args, nargs, &addr, &value, &budget) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    spent = spin_on(addr, value, budget);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(spent);
}

static PyObject *mod_futex_wait(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t *addr, expected;
    long long timeout;
    if (word_args("futex_wait(address, expected, timeout_ns)", args, nargs, &addr, &expected,
                  &timeout) < 0)
        return NULL;
    struct timespec ts = {(time_t)(timeout / 1000000000LL), (long)(timeout % 1000000000LL)};
#if defined(__linux__) && defined(SYS_futex)
    Py_BEGIN_ALLOW_THREADS
    syscall(SYS_futex, addr, SB_FUTEX_WAIT, expected, &ts, NULL, 0);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyObject *mod_futex_wake(PyObject *mod, PyObject *arg)
{
    uint32_t *addr;
    if (address_arg(arg, &addr) < 0)
        return NULL;
    wake_all(addr);
    Py_RETURN_NONE;
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#define LOCK_NOW(m) pthread_mutex_clocklock((m), CLOCK_MONOTONIC, &PAST)
#else   /* older glibc: CLOCK_REALTIME deadlines, as robust_mutex.py does there */
#define LOCK_NOW(m) pthread_mutex_timedlock((m), &PAST)
#endif

static PyObject *s_check_kind, *s_finish_acquire, *s_contended, *s_unlock_failed,
    *s_reacquire, *s_not_owner, *s_sblock, *s_obj, *s_lock, *s_m, *s_kind_word, *s_kind,
    *s_enter, *s_exit;

/* ------------------------------------------------------------------ LockCore */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t *m;          /* the mutex inside the mapping; NULL until _bind */
    int32_t *kind_word;          /* its __kind word */
    int32_t kind;                /* the __kind it was initialized with */
    unsigned long owner;         /* PyThread ident of the owning thread, 0: none */
    Py_ssize_t depth;            /* recursion depth of the owner */
    PyObject *m_obj;             /* the ctypes views: they keep the mapping alive */
    PyObject *kind_word_obj;
    uint32_t *wake_addr;         /* the pending wake-up's seq word, NULL: none */
    PyObject *wake_ref;          /* keeps the mapping of wake_addr alive */
} LockCore;

#ifndef Py_LIMITED_API
static PyTypeObject LockCoreType;
#endif

static inline int kind_ok(LockCore *self)
{
    return __atomic_load_n(self->kind_word, __ATOMIC_RELAXED) == self->kind;
}

/* Issue the pending wake-up, if any (after the unlock: section 10.3, notify). */
static void flush_wake(LockCore *self)
{
    uint32_t *addr = self->wake_addr;
    if (!addr)
        return;
    PyObject *ref = self->wake_ref;
    self->wake_addr = NULL;
    self->wake_ref = NULL;
    wake_all(addr);
    Py_XDECREF(ref);
}

/* _defer_wake(address, ref): a wake-up of the seq word at address, due after the lock's
 * outermost release; one slot: a pending one for another word is issued now. */
static PyObject *core_defer_wake(LockCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t *addr;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_defer_wake(address, ref)");
        return NULL;
    }
    if (address_arg(args[0], &addr) < 0)
        return NULL;
    if (self->wake_addr && self->wake_addr != addr)
        flush_wake(self);
    if (!self->wake_addr) {
        self->wake_addr = addr;
        self->wake_ref = Py_NewRef(args[1]);
    }
    Py_RETURN_NONE;
}

static PyObject *core_flush_wake(LockCore *self, PyObject *unused)
{
    flush_wake(self);
    Py_RETURN_NONE;
}

static int call_void(PyObject *self, PyObject *name, PyObject *arg)
{
    PyObject *r = arg ? PyObject_CallMethodOneArg(self, name, arg)
                      : PyObject_CallMethodNoArgs(self, name);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int call_with_rc(PyObject *self, PyObject *name, int rc)
{
    PyObject *arg = PyLong_FromLong(rc);
    if (!arg)
        return -1;
    int r = call_void(self, name, arg);
    Py_DECREF(arg);
    return r;
}

static int buffer_address(PyObject *obj, Py_ssize_t need, void **out)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int ok = view.len >= need;
    *out = view.buf;
    PyBuffer_Release(&view);    /* obj itself keeps the mapping exported */
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "the mutex view is smaller than a mutex");
        return -1;
    }
    return 0;
}

static int not_bound(void)
{
    PyErr_SetString(PyExc_RuntimeError, "this lock is not bound to a mutex");
    return -1;
}

/* _bind(mx): take the mutex of a robust_mutex.RobustMutex (its views m and kind_word,
 * and the expected kind); the lock is then unowned. */
static PyObject *core_bind(LockCore *self, PyObject *mx)
{
    PyObject *m = NULL, *kw = NULL, *kind = NULL;
    void *maddr, *kaddr;
    if (!(m = PyObject_GetAttr(mx, s_m)) || !(kw = PyObject_GetAttr(mx, s_kind_word))
        || !(kind = PyObject_GetAttr(mx, s_kind)))
        goto fail;
    long k = PyLong_AsLong(kind);
    if (k == -1 && PyErr_Occurred())
        goto fail;
    if (buffer_address(m, (Py_ssize_t)sizeof(pthread_mutex_t), &maddr) < 0
        || buffer_address(kw, 4, &kaddr) < 0)
        goto fail;
    Py_XSETREF(self->m_obj, m);
    Py_XSETREF(self->kind_word_obj, kw);
    Py_DECREF(kind);
    self->m = maddr;
    self->kind_word = kaddr;
    self->kind = (int32_t)k;
    self->owner = 0;
    self->depth = 0;
    Py_RETURN_NONE;
fail:
    Py_XDECREF(m);
    Py_XDECREF(kw);
    Py_XDECREF(kind);
    return NULL;
}

static PyObject *acquire_impl(LockCore *self, PyObject *block, PyObject *timeout)
{
    unsigned long me = PyThread_get_thread_ident();
    if (self->depth && self->owner == me)
        return PyObject_CallMethodObjArgs((PyObject *)self, s_reacquire, block, timeout, NULL);
    if (!self->m)
        return not_bound(), NULL;
    if (!kind_ok(self) && call_void((PyObject *)self, s_check_kind, NULL) < 0)
        return NULL;
    int rc = LOCK_NOW(self->m);
    if (rc) {
        PyObject *rcobj = PyLong_FromLong(rc);
        if (!rcobj)
            return NULL;
        PyObject *got = PyObject_CallMethodObjArgs((PyObject *)self, s_finish_acquire,
                                                   rcobj, block, timeout, NULL);
        Py_DECREF(rcobj);
        if (!got)
            return NULL;
        int t = PyObject_IsTrue(got);
        Py_DECREF(got);
        if (t < 0)
            return NULL;
        if (!t)
            Py_RETURN_FALSE;
    }
    self->owner = me;
    self->depth = 1;
    Py_RETURN_TRUE;
}

/* The arguments of acquire(block=True, timeout=None) of a lock and of a semaphore (vectorcall):
   0, or -1 with a TypeError set. */
static int parse_acquire_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                              PyObject **block, PyObject **timeout)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    *block = Py_True;
    *timeout = Py_None;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", nargs);
        return -1;
    }
    if (nargs > 0) *block = args[0];
    if (nargs > 1) *timeout = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "block") == 0 && nargs < 1)
            *block = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0 && nargs < 2)
            *timeout = args[nargs + i];
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected or repeated keyword "
                         "argument '%U'", key);
            return -1;
        }
    }
    return 0;
}

static PyObject *core_acquire(LockCore *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *block, *timeout;
    if (parse_acquire_args(args, nargs, kwnames, &block, &timeout) < 0)
        return NULL;
    return acquire_impl(self, block, timeout);
}

static PyObject *core_enter(LockCore *self, PyObject *unused)
{
    return acquire_impl(self, Py_True, Py_None);
}

static PyObject *core_release(LockCore *self, PyObject *unused)
{
    if (!(self->depth && self->owner == PyThread_get_thread_ident())
        && call_void((PyObject *)self, s_not_owner, NULL) < 0)
        return NULL;
    Py_ssize_t depth = self->depth - 1;
    if (depth) {
        self->depth = depth;
        Py_RETURN_NONE;
    }
    self->owner = 0;
    self->depth = 0;
    if (!self->m)
        return not_bound(), NULL;
    int rc = pthread_mutex_unlock(self->m);
    flush_wake(self);
    if (rc && call_with_rc((PyObject *)self, s_unlock_failed, rc) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *core_exit(LockCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    return core_release(self, NULL);
}

static PyObject *core_get_owner(LockCore *self, void *closure)
{
    if (!self->owner)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(self->owner);
}

static int core_set_owner(LockCore *self, PyObject *value, void *closure)
{
    if (!value || value == Py_None) {
        self->owner = 0;
        return 0;
    }
    unsigned long v = PyLong_AsUnsignedLong(value);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    self->owner = v;
    return 0;
}

static PyObject *core_get_depth(LockCore *self, void *closure)
{
    return PyLong_FromSsize_t(self->depth);
}

static int core_set_depth(LockCore *self, PyObject *value, void *closure)
{
    Py_ssize_t v = value ? PyLong_AsSsize_t(value) : 0;
    if (v == -1 && PyErr_Occurred())
        return -1;
    self->depth = v;
    return 0;
}

static PyObject *core_get_kind(LockCore *self, void *closure)
{
    return PyLong_FromLong(self->kind);
}

static void core_dealloc(LockCore *self)
{
    Py_CLEAR(self->m_obj);
    Py_CLEAR(self->kind_word_obj);
    flush_wake(self);
    TP_FREE(self);
}

static PyMethodDef core_methods[] = {
    {"_bind", (PyCFunction)core_bind, METH_O,
     "_bind(mx): use the mutex of the robust_mutex.RobustMutex mx; the lock is unowned."},
    {"acquire", (PyCFunction)(void (*)(void))core_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, /, block=True, timeout=None)\n--\n\n"
     "Acquire the lock, like multiprocessing.RLock/Lock.acquire.\n\n"
     "block=False: do not wait. timeout (seconds, block=True only): wait at most that\n"
     "long. Returns True if acquired, False if not. A holder that died is recovered:\n"
     "the call then warns with LockRecoveredWarning and returns True."},
    {"release", (PyCFunction)core_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease the lock; the calling thread must hold it."},
    {"_defer_wake", (PyCFunction)(void (*)(void))core_defer_wake, METH_FASTCALL,
     "_defer_wake(address, ref): FUTEX_WAKE the u32 at address after the outermost release\n"
     "(ref keeps its mapping alive); a pending wake-up of another word is issued now."},
    {"_flush_wake", (PyCFunction)core_flush_wake, METH_NOARGS,
     "_flush_wake(): issue the pending wake-up now, if any (after an unlock)."},
    {"__enter__", (PyCFunction)core_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nacquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))core_exit, METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nrelease()"},
    {NULL}
};

static PyMemberDef core_members[] = {
    {"_m", T_OBJECT, offsetof(LockCore, m_obj), READONLY, "ctypes view of the mutex bytes"},
    {"_kind_word", T_OBJECT, offsetof(LockCore, kind_word_obj), READONLY,
     "ctypes view of the mutex's __kind word"},
    {NULL}
};

static PyGetSetDef core_getset[] = {
    {"_owner", (getter)core_get_owner, (setter)core_set_owner,
     "thread ident (threading.get_ident) of the owner, None when unowned", NULL},
    {"_depth", (getter)core_get_depth, (setter)core_set_depth,
     "the owner's recursion depth, 0 when unowned", NULL},
    {"_kind", (getter)core_get_kind, NULL, "the __kind the mutex was initialized with", NULL},
    {NULL}
};

#ifndef Py_LIMITED_API
static PyTypeObject LockCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sharedbridge._platform._fastlock.LockCore",
    .tp_basicsize = sizeof(LockCore),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The fast path of a shared lock (compiled): acquire, release, with.",
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_getset = core_getset,
    .tp_new = PyType_GenericNew,
};
#else
static PyType_Slot LockCoreType_slots[] = {
    {Py_tp_dealloc, (void *)((destructor)core_dealloc)},
    {Py_tp_doc, (void *)("The fast path of a shared lock (compiled): acquire, release, with.")},
    {Py_tp_methods, (void *)(core_methods)},
    {Py_tp_members, (void *)(core_members)},
    {Py_tp_getset, (void *)(core_getset)},
    {Py_tp_new, (void *)(PyType_GenericNew)},
    {0, NULL}
};
static PyType_Spec LockCoreType_spec = {
    "sharedbridge._platform._fastlock.LockCore", sizeof(LockCore), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, LockCoreType_slots,
};
#endif

/* ------------------------------------------------------------ locked accessors */

enum { OP_GETITEM, OP_SETITEM, OP_GETATTR, OP_SETATTR };

static PyObject *do_op(PyObject *obj, int op, PyObject *key, PyObject *value)
{
    int r;
    switch (op) {
    case OP_GETITEM: return PyObject_GetItem(obj, key);
    case OP_GETATTR: return PyObject_GetAttr(obj, key);
    case OP_SETITEM: r = PyObject_SetItem(obj, key, value); break;
    default: r = PyObject_SetAttr(obj, key, value); break;
    }
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The raised exception (normalized, with its traceback), taken out of the error
 * indicator; NULL if none. */
static PyObject *take_raised(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    if (!et)
        return NULL;
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb)
        PyException_SetTraceback(ev, tb);
    Py_DECREF(et);
    Py_XDECREF(tb);
    return ev;
#endif
}

/* Raise *exc* again (a reference taken by take_raised); NULL: nothing. */
static void restore_raised(PyObject *exc)
{
    if (!exc)
        return;
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* The error being raised now gets *earlier* (a reference, stolen) as its __context__,
 * as when an except or finally block raises. */
static void chain_raised(PyObject *earlier)
{
    if (!earlier)
        return;
    PyObject *now = take_raised();
    PyException_SetContext(now, earlier);
    restore_raised(now);
}

/* The error raised by the unlock replaces the operation's, with that as its context. */
static PyObject *unlock_failed_after(LockCore *lk, int rc, PyObject *result)
{
    PyObject *pending = take_raised();
    if (call_with_rc((PyObject *)lk, s_unlock_failed, rc) == 0) {
        restore_raised(pending);
        return result;
    }
    Py_XDECREF(result);
    chain_raised(pending);
    return NULL;
}

/* With a lock that is not a sharedbridge lock: `with wrapper._lock: op`. As in a with
 * statement, __exit__ gets the operation's error, and a true result suppresses it. */
static PyObject *foreign_op(PyObject *wrapper, PyObject *obj, int op, PyObject *key,
                            PyObject *value)
{
    PyObject *lock = PyObject_GetAttr(wrapper, s_lock);
    if (!lock)
        return NULL;
    PyObject *r = PyObject_CallMethodNoArgs(lock, s_enter);
    if (!r) {
        Py_DECREF(lock);
        return NULL;
    }
    Py_DECREF(r);
    PyObject *result = do_op(obj, op, key, value);
    PyObject *failed = result ? NULL : take_raised();
    if (failed) {
        PyObject *tb = PyException_GetTraceback(failed);
        r = PyObject_CallMethodObjArgs(lock, s_exit, (PyObject *)Py_TYPE(failed), failed,
                                       tb ? tb : Py_None, NULL);
        Py_XDECREF(tb);
    }
    else
        r = PyObject_CallMethodObjArgs(lock, s_exit, Py_None, Py_None, Py_None, NULL);
    Py_DECREF(lock);
    int suppress = r ? PyObject_IsTrue(r) : -1;
    Py_XDECREF(r);
    if (suppress < 0) {             /* __exit__ raised */
        Py_XDECREF(result);
        chain_raised(failed);
        return NULL;
    }
    if (!failed)
        return result;
    if (suppress) {
        Py_DECREF(failed);
        Py_RETURN_NONE;
    }
    restore_raised(failed);
    return NULL;
}

/* One operation on wrapper._obj under wrapper._sblock (lock_core.py, _FAST_PATH). */
static PyObject *locked_op(PyObject *wrapper, int op, PyObject *key, PyObject *value)
{
    PyObject *result = NULL;
    PyObject *lkobj = PyObject_GetAttr(wrapper, s_sblock);
    if (!lkobj)
        return NULL;
    PyObject *obj = PyObject_GetAttr(wrapper, s_obj);
    if (!obj) {
        Py_DECREF(lkobj);
        return NULL;
    }
    if (!PyObject_TypeCheck(lkobj, &LockCoreType)) {
        result = foreign_op(wrapper, obj, op, key, value);
        goto done;
    }
    LockCore *lk = (LockCore *)lkobj;
    if (lk->depth && lk->owner == PyThread_get_thread_ident()) {
        result = do_op(obj, op, key, value);     /* this thread holds it already */
        goto done;
    }
    if (!lk->m) {
        not_bound();
        goto done;
    }
    if (!kind_ok(lk) && call_void(lkobj, s_check_kind, NULL) < 0)
        goto done;
    int rc = LOCK_NOW(lk->m);
    if (rc && call_with_rc(lkobj, s_contended, rc) < 0)
        goto done;
    result = do_op(obj, op, key, value);
    rc = pthread_mutex_unlock(lk->m);
    flush_wake(lk);
    if (rc)
        result = unlock_failed_after(lk, rc, result);
done:
    Py_DECREF(obj);
    Py_DECREF(lkobj);
    return result;
}

/* LockedOp: a method for a wrapper class (__getitem__ / __setitem__). It is a method
 * descriptor, so `wrapper[i]` calls it unbound with the wrapper first, like a function
 * defined in the class. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int op;
} LockedOp;

static PyObject *lockedop_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    LockedOp *self = (LockedOp *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t want = self->op == OP_GETITEM ? 2 : 3;
    if (nargs != want || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd positional arguments",
                     self->op == OP_GETITEM ? "__getitem__" : "__setitem__", want - 1);
        return NULL;
    }
    return locked_op(args[0], self->op, args[1], want == 3 ? args[2] : NULL);
}

static PyObject *lockedop_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (!obj || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

#ifndef Py_LIMITED_API
static PyTypeObject LockedOpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sharedbridge._platform._fastlock.LockedOp",
    .tp_basicsize = sizeof(LockedOp),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "An item accessor of a synchronized wrapper, under its lock.",
    .tp_vectorcall_offset = offsetof(LockedOp, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = lockedop_get,
};
#else
static PyMemberDef LockedOpType_spec_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(LockedOp, vectorcall), Py_READONLY},
    {NULL}
};
static PyType_Slot LockedOpType_slots[] = {
    {Py_tp_doc, (void *)("An item accessor of a synchronized wrapper, under its lock.")},
    {Py_tp_call, (void *)(PyVectorcall_Call)},
    {Py_tp_descr_get, (void *)(lockedop_get)},
    {Py_tp_members, (void *)LockedOpType_spec_members},
    {0, NULL}
};
static PyType_Spec LockedOpType_spec = {
    "sharedbridge._platform._fastlock.LockedOp", sizeof(LockedOp), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL, LockedOpType_slots,
};
#endif

/* LockedAttr: a property of a wrapper class (value) read and written under the lock. */
typedef struct {
    PyObject_HEAD
    PyObject *name;
} LockedAttr;

static PyObject *lockedattr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (!obj || obj == Py_None)
        return Py_NewRef(self);
    return locked_op(obj, OP_GETATTR, ((LockedAttr *)self)->name, NULL);
}

static int lockedattr_set(PyObject *self, PyObject *obj, PyObject *value)
{
    if (!value) {
        PyErr_Format(PyExc_AttributeError, "cannot delete attribute %R", ((LockedAttr *)self)->name);
        return -1;
    }
    PyObject *r = locked_op(obj, OP_SETATTR, ((LockedAttr *)self)->name, value);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static void lockedattr_dealloc(LockedAttr *self)
{
    Py_XDECREF(self->name);
    TP_FREE(self);
}

#ifndef Py_LIMITED_API
static PyTypeObject LockedAttrType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sharedbridge._platform._fastlock.LockedAttr",
    .tp_basicsize = sizeof(LockedAttr),
    .tp_dealloc = (destructor)lockedattr_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An attribute of a synchronized wrapper's object, read and written under its lock.",
    .tp_descr_get = lockedattr_get,
    .tp_descr_set = lockedattr_set,
};
#else
static PyType_Slot LockedAttrType_slots[] = {
    {Py_tp_dealloc, (void *)((destructor)lockedattr_dealloc)},
    {Py_tp_doc, (void *)("An attribute of a synchronized wrapper's object, read and written under its lock.")},
    {Py_tp_descr_get, (void *)(lockedattr_get)},
    {Py_tp_descr_set, (void *)(lockedattr_set)},
    {0, NULL}
};
static PyType_Spec LockedAttrType_spec = {
    "sharedbridge._platform._fastlock.LockedAttr", sizeof(LockedAttr), 0, Py_TPFLAGS_DEFAULT, LockedAttrType_slots,
};
#endif

static PyObject *make_locked_attr(PyObject *module, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "locked_attr(name): name must be a str");
        return NULL;
    }
    LockedAttr *a = PyObject_New(LockedAttr, &LockedAttrType);
    if (!a)
        return NULL;
    a->name = Py_NewRef(name);
    PyUnicode_InternInPlace(&a->name);
    return (PyObject *)a;
}

static PyObject *make_locked_op(int op)
{
    LockedOp *f = PyObject_New(LockedOp, &LockedOpType);
    if (!f)
        return NULL;
    f->vectorcall = lockedop_call;
    f->op = op;
    return (PyObject *)f;
}

/* ------------------------------------------------------------------ WaitCore */
/* The wait protocol of docs/format.md section 10.3 on the sixteen words of a
 * synchronization segment (kinds 4 to 7), and the operations of the event, the semaphore
 * and the condition as single calls. sync._Waitable derives from WaitCore as SharedLock
 * derives from LockCore; sync.py holds the ctypes twin of every method (the same steps in
 * the same order): python/tests run on both paths.
 *
 * The words change only with the object's lock held (a LockCore: its fast path is called
 * directly, its slow paths through Python as for acquire()). What stays in Python, called
 * from here: the corrupt-segment error (self._corrupt(what)), the holder table search and
 * the reclaim of dead holders' units (self._record(), self._take_units(n),
 * self._free_gone(): it reads /proc), called only when the entry this process used last
 * (self._hint) does not do. The GIL is released while spinning and in FUTEX_WAIT; after
 * each of them PyErr_CheckSignals runs the signal handlers, and an error there (Ctrl-C)
 * abandons the wait: the lock is taken again, the registration undone, and the operation
 * leaves (waiters) before its lock is released, as the ctypes path's finally blocks do. */

enum { W_SEQ, W_WAITERS, W_SIGNALS, W_3, W_4, W_5, W_SLEEPERS, SYNC_WORDS = 16 };
#define W_FLAG W_3
#define W_VALUE W_3
#define W_SETS W_4
#define VALUE_MAX 0x7FFFFFFFu
#define SLICE_NS 50000000LL
#define NO_DEADLINE (-1LL)
/* The spin's adaptation (wake.py, Spinner: the same constants and rule). */
#define FAILS_OFF 4
#define RETRY_FIRST 16
#define RETRY_MAX 1024

enum { R_NOTIFIED, R_WOKEN, R_TIMED_OUT };

static long long spin_budget_ns;    /* process-wide, from wake.py (set_spin_ns) */
static PyObject *s_corrupt, *s_record, *s_take_units, *s_free_gone, *s_identity,
    *s_notified, *s_woken, *s_timed_out, *g_zero;

typedef struct {
    PyObject_HEAD
    uint32_t *w;                /* the words; NULL until _wbind */
    Py_ssize_t sleepers;        /* index of the sleepers word: 6 in a synchronization
                                 * segment (section 10.2), 3 in a queue's wait block (11.2) */
    PyObject *w_obj;            /* the ctypes array of the words: keeps the mapping alive */
    LockCore *lock;             /* the lock of the words (the segment's, or external) */
    int registers;              /* format version 4: waiters register in sleepers */
    int bounded;                /* semaphore: a BoundedSemaphore */
    Py_ssize_t slots;           /* holder table entries (0: none) */
    uint32_t max_value;         /* semaphore: max_value from the private copy */
    Py_ssize_t hint;            /* the entry this process held last, -1: none */
    long me_pid;                /* the identity cached from self._identity() */
    unsigned long long me_start;
    int fails;                  /* the spinner (wake.Spinner) */
    int skip;
    int interval;
} WaitCore;

static inline uint32_t ld(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void st(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static int wc_bound(WaitCore *self)
{
    if (self->w)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "this synchronization object is not bound to its words");
    return -1;
}

/* Raise self._corrupt(what) (a CorruptSegmentError with the object's name). */
static int wc_corrupt(WaitCore *self, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *what = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (!what)
        return -1;
    PyObject *exc = PyObject_CallMethodOneArg((PyObject *)self, s_corrupt, what);
    Py_DECREF(what);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return -1;
}

/* ---- the lock, with this thread's ownership record (LockCore's fields) */

static int lk_enter(LockCore *lk)
{
    PyObject *r = acquire_impl(lk, Py_True, Py_None);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Release the lock; an error being raised stays raised (with the unlock's, if any, on top). */
static PyObject *lk_exit(LockCore *lk, PyObject *result)
{
    PyObject *pending = take_raised();
    PyObject *r = core_release(lk, NULL);
    if (!r) {
        Py_XDECREF(result);
        chain_raised(pending);
        return NULL;
    }
    Py_DECREF(r);
    restore_raised(pending);
    return result;
}

static int lk_held_by_me(LockCore *lk)
{
    return lk->depth && lk->owner == PyThread_get_thread_ident();
}

/* Section 10.3 wait step 1: release completely (any depth), then the deferred wake-up. */
static int lk_release_save(LockCore *lk, Py_ssize_t *depth)
{
    *depth = lk->depth;
    lk->owner = 0;
    lk->depth = 0;
    int rc = pthread_mutex_unlock(lk->m);
    flush_wake(lk);
    if (rc)
        return call_with_rc((PyObject *)lk, s_unlock_failed, rc);
    return 0;
}

/* Take the lock again to *depth*: 0 when taken (an error being raised stays raised),
 * -1 when taking it failed (that error raised, the earlier one as its context). */
static int lk_acquire_restore(LockCore *lk, Py_ssize_t depth)
{
    PyObject *pending = take_raised();
    if (lk_enter(lk) < 0) {
        chain_raised(pending);
        return -1;
    }
    lk->depth = depth;
    restore_raised(pending);
    return 0;
}

static void lk_defer_wake(LockCore *lk, uint32_t *addr, PyObject *ref)
{
    if (lk->wake_addr && lk->wake_addr != addr)
        flush_wake(lk);
    if (!lk->wake_addr) {
        lk->wake_addr = addr;
        lk->wake_ref = Py_NewRef(ref);
    }
}

/* ---- the words (section 10.3), with the lock held */

static int wc_check_signals(WaitCore *self)
{
    uint32_t *w = self->w;
    if (w[W_SIGNALS] > w[W_WAITERS])
        return wc_corrupt(self, "signals %lu > waiters %lu", (unsigned long)w[W_SIGNALS],
                          (unsigned long)w[W_WAITERS]);
    if (self->registers && w[self->sleepers] > w[W_WAITERS])
        return wc_corrupt(self, "sleepers %lu > waiters %lu", (unsigned long)w[self->sleepers],
                          (unsigned long)w[W_WAITERS]);
    return 0;
}

static int wc_join(WaitCore *self)
{
    if (wc_check_signals(self) < 0)
        return -1;
    self->w[W_WAITERS] += 1;
    return 0;
}

static void wc_leave(WaitCore *self)
{
    uint32_t *w = self->w;
    uint32_t waiters = w[W_WAITERS] ? w[W_WAITERS] - 1 : 0;
    w[W_WAITERS] = waiters;
    if (self->registers && w[self->sleepers] > waiters)
        w[self->sleepers] = waiters;
    if (w[W_SIGNALS] > waiters)
        w[W_SIGNALS] = waiters;
}

/* Leave on the way out of an operation, if this thread still holds the lock (taking
 * it again after a wait can fail only with the lock not held). */
static void wc_leave_if_held(WaitCore *self)
{
    if (lk_held_by_me(self->lock))
        wc_leave(self);
}

/* Release the lock at the end of an operation, if this thread holds it. */
static PyObject *wc_exit(WaitCore *self, PyObject *result)
{
    if (!lk_held_by_me(self->lock))
        return result;
    return lk_exit(self->lock, result);
}

static int wc_notify(WaitCore *self, unsigned long long n)
{
    uint32_t *w = self->w;
    if (wc_check_signals(self) < 0)
        return -1;
    unsigned long long room = w[W_WAITERS] - w[W_SIGNALS];
    unsigned long long k = n < room ? n : room;
    if (k > 0) {
        w[W_SIGNALS] += (uint32_t)k;
        st(&w[W_SEQ], w[W_SEQ] + 1);
        if (!self->registers || w[self->sleepers])
            lk_defer_wake(self->lock, &w[W_SEQ], self->w_obj);
    }
    return 0;
}

static long long spinner_budget(WaitCore *self)
{
    if (!spin_budget_ns)
        return 0;
    if (self->skip) {
        self->skip--;
        return 0;
    }
    return spin_budget_ns;
}

static void spinner_result(WaitCore *self, int changed)
{
    if (changed) {
        self->fails = 0;
        self->interval = RETRY_FIRST;
        return;
    }
    if (++self->fails >= FAILS_OFF) {
        self->skip = self->interval;
        self->interval = 2 * self->interval < RETRY_MAX ? 2 * self->interval : RETRY_MAX;
        self->fails = FAILS_OFF - 1;
    }
}

static void wc_register(WaitCore *self)
{
    uint32_t s = self->w[self->sleepers];
    self->w[self->sleepers] = s == 0xFFFFFFFFu ? s : s + 1;
}

/* Section 10.3 wait(deadline) by a joined thread holding the lock: 0 and *result, or -1
 * with an error raised. The lock is held on return (to the depth it had) in both cases
 * (unless taking it again failed); the caller stays joined either way. */
static int wc_wait(WaitCore *self, long long deadline, int *result)
{
    uint32_t *w = self->w, *seqp = &self->w[W_SEQ];
    LockCore *lk = self->lock;
    uint32_t seq = ld(seqp);
    long long spin = spinner_budget(self);
    int registered = 0, held = 0, failed = 0;
    Py_ssize_t depth;
    if (!spin && self->registers) {         /* step 1: one that will not spin */
        wc_register(self);
        registered = 1;
    }
    if (lk_release_save(lk, &depth) < 0)    /* step 1, and the deferred wake-up */
        return -1;
    if (spin) {                             /* step 2 */
        long long spent;
        Py_BEGIN_ALLOW_THREADS
        spent = spin_on(seqp, seq, spin);
        Py_END_ALLOW_THREADS
        spinner_result(self, spent >= 0);
        if (PyErr_CheckSignals() < 0)
            failed = 1;
        else if (spent < 0 && self->registers) {    /* step 3 */
            if (lk_acquire_restore(lk, depth) < 0)
                return -1;
            held = 1;
            if (ld(seqp) == seq) {
                wc_register(self);
                registered = 1;
                held = 0;
                if (lk_release_save(lk, &depth) < 0)
                    return -1;
            }
        }
    }
    while (!held && !failed) {              /* step 4 */
        long long now = now_ns();
        if (ld(seqp) != seq || (deadline != NO_DEADLINE && now >= deadline))
            break;
        long long t = SLICE_NS;
        if (deadline != NO_DEADLINE && deadline - now < t)
            t = deadline - now;
        struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
#if defined(__linux__) && defined(SYS_futex)
        Py_BEGIN_ALLOW_THREADS
        syscall(SYS_futex, seqp, SB_FUTEX_WAIT, seq, &ts, NULL, 0);
        Py_END_ALLOW_THREADS
#endif
        if (PyErr_CheckSignals() < 0)       /* a handler raised (Ctrl-C): abandon */
            failed = 1;
    }
    if (!held && lk_acquire_restore(lk, depth) < 0)    /* step 5 */
        return -1;          /* not held: the words stay as they are */
    if (registered)                         /* step 6 */
        w[self->sleepers] = w[self->sleepers] ? w[self->sleepers] - 1 : 0;
    if (failed)
        return -1;
    if (wc_check_signals(self) < 0)
        return -1;
    if (w[W_SIGNALS]) {                     /* step 7 */
        w[W_SIGNALS] -= 1;
        *result = R_NOTIFIED;
    }
    else                                    /* step 8 */
        *result = deadline != NO_DEADLINE && now_ns() >= deadline ? R_TIMED_OUT : R_WOKEN;
    return 0;
}

/* ---- arguments */

/* _deadline(timeout) of sync.py: NO_DEADLINE for None, else now + max(0, timeout) s. */
static int deadline_arg(PyObject *timeout, long long *deadline)
{
    if (timeout == Py_None) {
        *deadline = NO_DEADLINE;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (!(t > 0.0))
        t = 0.0;            /* max(0.0, timeout), also for NaN */
    if (t * 1e9 > 9e18) {
        if (isinf(t)) {
            PyErr_SetString(PyExc_OverflowError, "cannot convert float infinity to integer");
            return -1;
        }
        *deadline = NO_DEADLINE;        /* beyond 285 years: no deadline */
        return 0;
    }
    *deadline = now_ns() + (long long)(t * 1e9);
    return 0;
}

static long long slice_deadline(long long deadline)
{
    long long end = now_ns() + SLICE_NS;
    return deadline == NO_DEADLINE || deadline > end ? end : deadline;
}

static PyObject *result_object(int r)
{
    return Py_NewRef(r == R_NOTIFIED ? s_notified : r == R_WOKEN ? s_woken : s_timed_out);
}

/* ---- the holder table hint (section 10.2): the entry this process used last */

static int wc_identity(WaitCore *self)
{
    long pid = (long)getpid();
    if (self->me_pid == pid)
        return 0;
    PyObject *me = PyObject_CallMethodNoArgs((PyObject *)self, s_identity);
    if (!me)
        return -1;
    unsigned long long start = 0;
    if (!PyTuple_Check(me) || PyTuple_GET_SIZE(me) != 2) {
        Py_DECREF(me);
        PyErr_SetString(PyExc_TypeError, "_identity() must return (pid, start_time)");
        return -1;
    }
    start = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(me, 1));
    Py_DECREF(me);
    if (start == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    self->me_pid = pid;
    self->me_start = start;
    return 0;
}

/* The hint entry if this process still holds it (pid and start time; units > 0 when
 * need_units), else NULL. */
static uint32_t *wc_hint_entry(WaitCore *self, int need_units)
{
    Py_ssize_t i = self->hint;
    if (i < 0 || i >= self->slots)
        return NULL;
    uint32_t *e = self->w + SYNC_WORDS + 4 * i;
    if (e[0] != (uint32_t)self->me_pid || (need_units && !e[1])
        || ((unsigned long long)e[2] | (unsigned long long)e[3] << 32) != self->me_start)
        return NULL;
    return e;
}

static int call_method_void(WaitCore *self, PyObject *name, PyObject *arg)
{
    return call_void((PyObject *)self, name, arg);
}

static int wc_record(WaitCore *self)
{
    if (!self->slots)
        return 0;
    if (wc_identity(self) < 0)
        return -1;
    uint32_t *e = wc_hint_entry(self, 0);
    if (e) {
        if (e[1] != 0xFFFFFFFFu)
            e[1] += 1;
        return 0;
    }
    return call_method_void(self, s_record, NULL);
}

static int wc_take_one(WaitCore *self)
{
    if (!self->slots)
        return 0;
    if (wc_identity(self) < 0)
        return -1;
    uint32_t *e = wc_hint_entry(self, 1);
    if (e) {
        e[1] -= 1;
        return 0;
    }
    PyObject *one = PyLong_FromLong(1);
    if (!one)
        return -1;
    int r = call_method_void(self, s_take_units, one);
    Py_DECREF(one);
    return r;
}

/* ---- the methods */

static PyObject *wc_wbind(WaitCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "_wbind(words, lock, registers, slots, max_value, bounded[, sleepers])");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[1], &LockCoreType)) {
        PyErr_SetString(PyExc_TypeError, "_wbind: the lock must be a LockCore");
        return NULL;
    }
    int registers = PyObject_IsTrue(args[2]);
    Py_ssize_t slots = PyLong_AsSsize_t(args[3]);
    if (registers < 0 || (slots == -1 && PyErr_Occurred()))
        return NULL;
    unsigned long max_value = PyLong_AsUnsignedLong(args[4]);
    int bounded = PyObject_IsTrue(args[5]);
    if ((max_value == (unsigned long)-1 && PyErr_Occurred()) || bounded < 0)
        return NULL;
    /* A queue's wait block (docs/format.md section 11.2) is four words: seq, waiters,
     * signals, sleepers; it has no holder table and no kind words. */
    Py_ssize_t sleepers = W_SLEEPERS, need = 4 * (SYNC_WORDS + 4 * slots);
    if (nargs == 7) {
        sleepers = PyLong_AsSsize_t(args[6]);
        if (sleepers == -1 && PyErr_Occurred())
            return NULL;
        if (sleepers != W_SLEEPERS && (sleepers != 3 || slots)) {
            PyErr_SetString(PyExc_ValueError, "_wbind: sleepers is word 6, or word 3 of a "
                            "four-word wait block without a holder table");
            return NULL;
        }
        if (sleepers == 3)
            need = 16;
    }
    void *addr;
    if (buffer_address(args[0], need, &addr) < 0)
        return NULL;
    Py_XSETREF(self->w_obj, Py_NewRef(args[0]));
    Py_XSETREF(self->lock, (LockCore *)Py_NewRef(args[1]));
    self->w = addr;
    self->sleepers = sleepers;
    self->registers = registers;
    self->slots = slots;
    self->bounded = bounded;
    self->max_value = (uint32_t)max_value;
    self->hint = -1;
    self->me_pid = 0;
    self->fails = 0;
    self->skip = 0;
    self->interval = RETRY_FIRST;
    Py_RETURN_NONE;
}

static PyObject *wc_m_join(WaitCore *self, PyObject *unused)
{
    if (wc_bound(self) < 0 || wc_join(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *wc_m_leave(WaitCore *self, PyObject *unused)
{
    if (wc_bound(self) < 0)
        return NULL;
    wc_leave(self);
    Py_RETURN_NONE;
}

static PyObject *wc_m_check_signals(WaitCore *self, PyObject *unused)
{
    if (wc_bound(self) < 0 || wc_check_signals(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int count_arg(PyObject *arg, unsigned long long *n)
{
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();      /* an int beyond 64 bits: more than any count of waiters */
        int neg = PyObject_RichCompareBool(arg, g_zero, Py_LT);
        if (neg < 0)
            return -1;
        *n = neg ? 0 : ULLONG_MAX;
        return 0;
    }
    *n = v < 0 ? 0 : (unsigned long long)v;
    return 0;
}

static PyObject *wc_m_notify(WaitCore *self, PyObject *arg)
{
    unsigned long long n;
    if (wc_bound(self) < 0 || count_arg(arg, &n) < 0 || wc_notify(self, n) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *wc_m_wait(WaitCore *self, PyObject *arg)
{
    long long deadline = NO_DEADLINE;
    int r;
    if (wc_bound(self) < 0)
        return NULL;
    if (arg != Py_None) {
        deadline = PyLong_AsLongLong(arg);
        if (deadline == -1 && PyErr_Occurred())
            return NULL;
        if (deadline < 0)
            deadline = 0;
    }
    if (wc_wait(self, deadline, &r) < 0)
        return NULL;
    return result_object(r);
}

/* Event (kind 4) */

static int ev_flag(WaitCore *self, uint32_t *flag)
{
    *flag = self->w[W_FLAG];
    if (*flag > 1)
        return wc_corrupt(self, "flag %lu", (unsigned long)*flag);
    return 0;
}

static PyObject *ev_set(WaitCore *self, PyObject *unused)
{
    uint32_t flag;
    if (wc_bound(self) < 0 || lk_enter(self->lock) < 0)
        return NULL;
    PyObject *result = NULL;
    if (ev_flag(self, &flag) == 0) {
        self->w[W_FLAG] = 1;
        self->w[W_SETS] += 1;
        if (wc_notify(self, VALUE_MAX) == 0)
            result = Py_NewRef(Py_None);
    }
    return lk_exit(self->lock, result);
}

static PyObject *ev_clear(WaitCore *self, PyObject *unused)
{
    uint32_t flag;
    if (wc_bound(self) < 0 || lk_enter(self->lock) < 0)
        return NULL;
    PyObject *result = NULL;
    if (ev_flag(self, &flag) == 0) {
        self->w[W_FLAG] = 0;
        result = Py_NewRef(Py_None);
    }
    return lk_exit(self->lock, result);
}

static PyObject *ev_is_set(WaitCore *self, PyObject *unused)
{
    uint32_t flag;
    if (wc_bound(self) < 0 || lk_enter(self->lock) < 0)
        return NULL;
    PyObject *result = ev_flag(self, &flag) == 0 ? PyBool_FromLong(flag == 1) : NULL;
    return lk_exit(self->lock, result);
}

static PyObject *ev_wait(WaitCore *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    static const char *const kw[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (nargs > 1 || (kwnames && PyTuple_GET_SIZE(kwnames) + nargs > 1)) {
        PyErr_SetString(PyExc_TypeError, "wait() takes at most 1 argument (timeout)");
        return NULL;
    }
    if (nargs == 1)
        timeout = args[0];
    else if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), kw[0]) != 0) {
            PyErr_Format(PyExc_TypeError, "wait() got an unexpected keyword argument '%U'",
                         PyTuple_GET_ITEM(kwnames, 0));
            return NULL;
        }
        timeout = args[0];
    }
    long long deadline;
    uint32_t flag;
    int r, joined = 0;
    if (wc_bound(self) < 0 || deadline_arg(timeout, &deadline) < 0
        || lk_enter(self->lock) < 0)
        return NULL;
    uint32_t *w = self->w;
    PyObject *result = NULL;
    if (ev_flag(self, &flag) < 0)
        goto out;
    if (flag) {
        result = Py_NewRef(Py_True);
        goto out;
    }
    uint32_t sets = w[W_SETS];
    while (deadline == NO_DEADLINE || now_ns() < deadline) {
        if (!joined) {
            if (wc_join(self) < 0)
                goto out;
            joined = 1;
        }
        if (wc_wait(self, slice_deadline(deadline), &r) < 0 || ev_flag(self, &flag) < 0)
            goto out;
        if (flag || w[W_SETS] != sets) {
            result = PyBool_FromLong(flag == 1);
            goto out;
        }
    }
    result = Py_NewRef(Py_False);
out:
    if (joined)
        wc_leave_if_held(self);
    return wc_exit(self, result);
}

/* Semaphore (kind 5) */

static int sem_value(WaitCore *self, uint32_t *value)
{
    *value = self->w[W_VALUE];
    if (*value > self->max_value)
        return wc_corrupt(self, "value %lu > max_value %lu", (unsigned long)*value,
                          (unsigned long)self->max_value);
    return 0;
}

static PyObject *sem_acquire(WaitCore *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    PyObject *block, *timeout;
    if (parse_acquire_args(args, nargs, kwnames, &block, &timeout) < 0)
        return NULL;
    int b = PyObject_IsTrue(block);
    if (b < 0)
        return NULL;
    long long deadline;
    if (wc_bound(self) < 0)
        return NULL;
    if (!b)
        deadline = now_ns();        /* block=False: a timeout of 0 */
    else if (deadline_arg(timeout, &deadline) < 0)
        return NULL;
    if (lk_enter(self->lock) < 0)
        return NULL;
    uint32_t *w = self->w, value;
    int r, joined = 0;
    PyObject *result = NULL;
    for (;;) {
        if (sem_value(self, &value) < 0)
            break;
        if (value) {
            w[W_VALUE] = value - 1;
            if (wc_record(self) == 0)
                result = Py_NewRef(Py_True);
            break;
        }
        if (self->slots) {      /* holders that died: their units come back (10.3) */
            PyObject *f = PyObject_CallMethodNoArgs((PyObject *)self, s_free_gone);
            if (!f)
                break;
            unsigned long long freed = PyLong_AsUnsignedLongLong(f);
            Py_DECREF(f);
            if (freed == (unsigned long long)-1 && PyErr_Occurred())
                break;
            if (freed) {
                value = freed < self->max_value ? (uint32_t)freed : self->max_value;
                w[W_VALUE] = value;
                if (wc_notify(self, value) < 0)
                    break;
                continue;
            }
        }
        if (deadline != NO_DEADLINE && now_ns() >= deadline) {
            result = Py_NewRef(Py_False);
            break;
        }
        if (!joined) {
            if (wc_join(self) < 0)
                break;
            joined = 1;
        }
        if (wc_wait(self, self->slots ? slice_deadline(deadline) : deadline, &r) < 0)
            break;
    }
    if (joined)
        wc_leave_if_held(self);
    return wc_exit(self, result);
}

static PyObject *sem_enter(WaitCore *self, PyObject *unused)
{
    return sem_acquire(self, NULL, 0, NULL);
}

static PyObject *sem_release(WaitCore *self, PyObject *unused)
{
    uint32_t value;
    if (wc_bound(self) < 0 || lk_enter(self->lock) < 0)
        return NULL;
    PyObject *result = NULL;
    if (sem_value(self, &value) < 0)
        goto out;
    if (value >= self->max_value) {
        if (self->bounded)
            PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
        else
            PyErr_Format(PyExc_OverflowError, "semaphore value would exceed %lu",
                         (unsigned long)VALUE_MAX);
        goto out;
    }
    self->w[W_VALUE] = value + 1;
    if (wc_take_one(self) == 0 && wc_notify(self, 1) == 0)
        result = Py_NewRef(Py_None);
out:
    return lk_exit(self->lock, result);
}

static PyObject *sem_exit(WaitCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    return sem_release(self, NULL);
}

static PyObject *sem_get_value(WaitCore *self, PyObject *unused)
{
    uint32_t value;
    if (wc_bound(self) < 0 || lk_enter(self->lock) < 0)
        return NULL;
    PyObject *result = sem_value(self, &value) == 0 ? PyLong_FromUnsignedLong(value) : NULL;
    return lk_exit(self->lock, result);
}

/* Condition (kind 6): the caller holds the lock (any depth) */

static PyObject *cond_wait(WaitCore *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *timeout = Py_None;
    if (nargs > 1 || (kwnames && PyTuple_GET_SIZE(kwnames) + nargs > 1)) {
        PyErr_SetString(PyExc_TypeError, "wait() takes at most 1 argument (timeout)");
        return NULL;
    }
    if (nargs == 1)
        timeout = args[0];
    else if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0) {
            PyErr_Format(PyExc_TypeError, "wait() got an unexpected keyword argument '%U'",
                         PyTuple_GET_ITEM(kwnames, 0));
            return NULL;
        }
        timeout = args[0];
    }
    if (wc_bound(self) < 0)
        return NULL;
    if (!lk_held_by_me(self->lock)) {
        PyErr_SetString(PyExc_AssertionError, "must acquire() condition before using wait()");
        return NULL;
    }
    long long deadline;
    int r = R_WOKEN;
    if (deadline_arg(timeout, &deadline) < 0 || wc_join(self) < 0)
        return NULL;
    while (r == R_WOKEN) {
        if (wc_wait(self, deadline, &r) < 0) {
            wc_leave_if_held(self);
            return NULL;
        }
    }
    wc_leave(self);
    return PyBool_FromLong(r == R_NOTIFIED);
}

static PyObject *cond_notify(WaitCore *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    unsigned long long n = 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "notify() takes at most 1 argument (n)");
        return NULL;
    }
    if (nkw && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "n") != 0) {
        PyErr_Format(PyExc_TypeError, "notify() got an unexpected keyword argument '%U'",
                     PyTuple_GET_ITEM(kwnames, 0));
        return NULL;
    }
    if (wc_bound(self) < 0)
        return NULL;
    if (!lk_held_by_me(self->lock)) {
        PyErr_SetString(PyExc_AssertionError, "lock is not owned");
        return NULL;
    }
    if (nargs + nkw && count_arg(args[0], &n) < 0)
        return NULL;
    if (wc_notify(self, n) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void wc_dealloc(WaitCore *self)
{
    Py_CLEAR(self->w_obj);
    Py_CLEAR(self->lock);
    TP_FREE(self);
}

#define FASTKW(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef wc_methods[] = {
    {"_wbind", (PyCFunction)(void (*)(void))wc_wbind, METH_FASTCALL,
     "_wbind(words, lock, registers, slots, max_value, bounded[, sleepers]): use the ctypes u32 array\n"
     "words (sixteen words and the holder table) under lock (a LockCore); registers: format\n"
     "version 4; max_value and bounded: a semaphore's, from the private copy."},
    {"_join", (PyCFunction)wc_m_join, METH_NOARGS,
     "Section 10.3 join, with the lock held: this operation counts in waiters."},
    {"_leave", (PyCFunction)wc_m_leave, METH_NOARGS,
     "Section 10.3 leave, with the lock held (once per joined operation)."},
    {"_check_signals", (PyCFunction)wc_m_check_signals, METH_NOARGS,
     "Corrupt-segment check of signals and sleepers against waiters."},
    {"_wait", (PyCFunction)wc_m_wait, METH_O,
     "_wait(deadline_ns or None): section 10.3 wait by a joined thread holding the lock:\n"
     "'notified', 'woken' or 'timed out'; the lock is held on return, also on an error."},
    {"_notify", (PyCFunction)wc_m_notify, METH_O,
     "_notify(n): section 10.3 notify, with the lock held; the wake-up after the release."},
    {"_event_set", (PyCFunction)ev_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag and wake every waiter."},
    {"_event_clear", (PyCFunction)ev_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nReset the flag."},
    {"_event_is_set", (PyCFunction)ev_is_set, METH_NOARGS,
     "is_set($self, /)\n--\n\nTrue when the flag is set."},
    {"_event_wait", FASTKW(ev_wait),
     "wait($self, /, timeout=None)\n--\n\nBlock until the flag is set or timeout seconds\n"
     "pass; returns the flag. A set() during the wait ends it even if clear() followed at\n"
     "once (then False), as multiprocessing.Event does (docs/format.md section 10.3)."},
    {"_sem_acquire", FASTKW(sem_acquire),
     "acquire($self, /, block=True, timeout=None)\n--\n\nTake one unit; with block=False or a\n"
     "timeout, False when none came in time."},
    {"_sem_enter", (PyCFunction)sem_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nacquire()"},
    {"_sem_release", (PyCFunction)sem_release, METH_NOARGS,
     "release($self, /)\n--\n\nReturn one unit, waking one waiter."},
    {"_sem_exit", (PyCFunction)(void (*)(void))sem_exit, METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nrelease()"},
    {"_sem_get_value", (PyCFunction)sem_get_value, METH_NOARGS,
     "get_value($self, /)\n--\n\nThe semaphore's value."},
    {"_cond_wait", FASTKW(cond_wait),
     "wait($self, /, timeout=None)\n--\n\nRelease the lock, wait for a notification or\n"
     "timeout seconds, take the lock again. True unless the timeout expired."},
    {"_cond_notify", FASTKW(cond_notify),
     "notify($self, /, n=1)\n--\n\nWake at most n waiters (in any process); the caller\n"
     "holds the lock."},
    {NULL}
};

static PyMemberDef wc_members[] = {
    {"_hint", T_PYSSIZET, offsetof(WaitCore, hint), 0,
     "the holder-table entry this process held last (checked before use), -1: none"},
    {NULL}
};

#ifndef Py_LIMITED_API
static PyTypeObject WaitCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sharedbridge._platform._fastlock.WaitCore",
    .tp_basicsize = sizeof(WaitCore),
    .tp_dealloc = (destructor)wc_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The wait protocol of a synchronization segment (compiled; see sync.py).",
    .tp_methods = wc_methods,
    .tp_members = wc_members,
    .tp_new = PyType_GenericNew,
};
#else
static PyType_Slot WaitCoreType_slots[] = {
    {Py_tp_dealloc, (void *)((destructor)wc_dealloc)},
    {Py_tp_doc, (void *)("The wait protocol of a synchronization segment (compiled; see sync.py).")},
    {Py_tp_methods, (void *)(wc_methods)},
    {Py_tp_members, (void *)(wc_members)},
    {Py_tp_new, (void *)(PyType_GenericNew)},
    {0, NULL}
};
static PyType_Spec WaitCoreType_spec = {
    "sharedbridge._platform._fastlock.WaitCore", sizeof(WaitCore), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, WaitCoreType_slots,
};
#endif

static PyObject *mod_set_spin_ns(PyObject *mod, PyObject *arg)
{
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred())
        return NULL;
    spin_budget_ns = ns < 0 ? 0 : ns;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ QueueCore */
/* The ring operations of a queue segment (docs/format.md section 11.3) as single calls:
 * queue_ring.QueueRing derives from QueueCore (as sync._Waitable from WaitCore) and
 * holds the ctypes twin of every step (put, put_many, get, get_many: _write, _read_one,
 * _state, _advance_head); python/tests run the queue tests on both paths.
 *
 * Each call takes the queue's mutex once (LockCore's fast path, its slow paths and the
 * EOWNERDEAD recovery through Python as for acquire()), does its records, and releases
 * it; the wake-ups of notify are issued after the release (section 10.3). The R and W
 * blocks are the ring's WaitCores (_R, _W): join, wait, notify and leave are WaitCore's
 * own C functions, so the GIL is released while waiting and Ctrl-C abandons the wait as
 * there. What stays in Python, called from here with the lock held: everything rare and
 * every error text. A control word or record header that breaks section 11.2/11.3, a
 * pad at the ring's end that does not look right, an out-of-line record (section 11.5),
 * a taken record met by the head (section 11.3, advance head) and the repair after a
 * recovered mutex are handed to the ring's Python methods (_read_one, _state,
 * _advance_head, _check_recovery), which re-read the words, raise the same
 * CorruptSegmentError, or do the work; nothing is stored here before that hand-over.
 * Messages that are not bytes/str (or out of line) are decoded by queue_fast.decode
 * after the release, as Queue._decode does. */

#define Q_COUNT 48
#define Q_UNFINISHED 52
#define Q_COMPLETED 56
#define Q_HEAD 64
#define Q_READ 72
#define Q_TAIL 80
#define Q_PUTS 88
#define Q_GETS 96
#define Q_RING 256
#define REC_READY 1
#define REC_TAKEN 2
#define REC_DONE 3
#define REC_PAD 4
#define MAX_TAG 6
/* docs/format.md section 11.5: a record's size is a u32. A message goes inline only when its
 * record is at most min(capacity / 4, MAX_INLINE_RECORD) bytes, and no record exceeds
 * min(capacity / 2, MAX_RECORD): queue_layout.py's inline_limit and record_limit. */
#define MAX_INLINE_RECORD ((uint64_t)1 << 31)
#define MAX_RECORD (((uint64_t)1 << 32) - 8)

static PyObject *q_signal, *q_full, *q_empty, *q_decode, *q_hooks, *q_finish_many, *q_deliver;
static PyObject *s_read_one, *s_state, *s_advance_head, *s_check_recovery, *s_tag,
    *s_descriptor, *s_data, *s_before_commit, *s_after_commit, *s_before_done;

typedef struct {
    PyObject_HEAD
    uint8_t *base;              /* the data area (control block); NULL until _qbind */
    uint8_t *ring;              /* base + 256 */
    uint64_t cap, mask, inline_max, record_max;     /* section 11.5 (MAX_RECORD) */
    uint32_t max_messages;      /* the private copy (section 11.2) */
    const uint64_t *recoveries; /* the header's recovery_count */
    uint64_t seen;
    uint64_t last_end;          /* the end (p + size) of the record qc_write committed last */
    PyObject *area_obj, *rec_obj, *name;
    PyObject *undelivered;      /* QueueRing._undelivered: taken, not yet handed over
                                 * (queue_delivery.py); a list, shared with Python */
    LockCore *lock;
    WaitCore *R, *W, *J;
} QueueCore;

typedef struct {                /* a record header (section 11.3), read once */
    uint32_t size;
    uint8_t state, tag, flags, reserved;
    uint32_t desc_length, taker_pid;
    uint64_t taker_start, data_length;
} RecHead;

_Static_assert(sizeof(RecHead) == 32, "a record header is 32 bytes");

typedef struct {
    uint32_t count, unfinished, completed;
    uint64_t head, read, tail, puts, gets;
} QState;

#define QW32(c, off) ((uint32_t *)((c)->base + (off)))
#define QW64(c, off) ((uint64_t *)((c)->base + (off)))
#define A8(x) (((x) + 7) & ~(uint64_t)7)

static int qc_bound(QueueCore *self)
{
    if (self->base)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "this queue ring is not bound to its segment");
    return -1;
}

/* Call a method of the ring (the Python twin), with the lock held. */
static PyObject *qc_call(QueueCore *self, PyObject *name, PyObject *a, PyObject *b,
                         PyObject *c)
{
    return PyObject_CallMethodObjArgs((PyObject *)self, name, a, b, c, NULL);
}

/* The control words, validated as _state does (section 11.2). 0, or 1 when they break an
 * invariant: the caller hands over to Python, which raises the error. */
static int qc_state(QueueCore *self, QState *s)
{
    s->count = *QW32(self, Q_COUNT);
    s->unfinished = *QW32(self, Q_UNFINISHED);
    s->completed = *QW32(self, Q_COMPLETED);
    s->head = *QW64(self, Q_HEAD);
    s->read = *QW64(self, Q_READ);
    s->tail = *QW64(self, Q_TAIL);
    s->puts = *QW64(self, Q_PUTS);
    s->gets = *QW64(self, Q_GETS);
    if (s->head <= s->read && s->read <= s->tail && s->tail - s->head <= self->cap
        && !((s->head | s->read | s->tail) & 7) && s->count <= self->max_messages
        && s->completed <= 1 && (uint64_t)s->count * 32 <= s->tail - s->read)
        return 0;
    return 1;
}

/* Raise the corrupt-segment error of bad control words (the Python _state). */
static int qc_state_error(QueueCore *self)
{
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, s_state);
    if (!r)
        return -1;
    Py_DECREF(r);
    PyErr_SetString(PyExc_RuntimeError, "queue control words refused by the compiled path "
                    "and accepted by the Python one");
    return -1;
}

/* The repair after a recovered mutex (section 11.3), when the count moved. */
static int qc_recovery(QueueCore *self)
{
    uint64_t now = __atomic_load_n(self->recoveries, __ATOMIC_RELAXED);
    if (now == self->seen)
        return 0;
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, s_check_recovery);
    if (!r)
        return -1;
    Py_DECREF(r);
    self->seen = now;
    return 0;
}

/* The header at ring position p into *h; 0 when it is a record that check_record accepts
 * with limit *limit* (8-byte pads at the ring's end included), 1 otherwise. */
static int qc_record(QueueCore *self, uint64_t p, uint64_t limit, RecHead *h)
{
    uint64_t o = p & self->mask;
    if (self->cap - o < 32) {
        memcpy(h, self->ring + o, 8);
        if (h->state != REC_PAD)
            return 1;
    }
    else
        memcpy(h, self->ring + o, 32);
    uint64_t size = h->size;
    if (size < 8 || size & 7 || o + size > self->cap || p + size > limit)
        return 1;
    if (h->state == REC_PAD)
        return 0;
    if (h->state < REC_READY || h->state > REC_DONE || h->tag < 1 || h->tag > MAX_TAG
        || h->flags & ~1 || size < 32)
        return 1;
    uint64_t body = size - 32;
    if (h->desc_length > body)
        return 1;
    uint64_t rest = body - A8((uint64_t)h->desc_length);
    if (h->flags & 1)
        return rest < 24;
    return h->data_length > self->cap || rest != A8(h->data_length);
}

/* Section 11.3 advance head from *head* to read (reclaim: also over taken records of
 * gone takers, in Python). 1 if head moved, 0 if not, -1 error. */
static int qc_advance_head(QueueCore *self, uint64_t head, uint64_t read, int reclaim)
{
    uint64_t p = head;
    RecHead h;
    while (p < read) {
        if (qc_record(self, p, read, &h) || (h.state == REC_TAKEN && reclaim)) {
            PyObject *a = PyLong_FromUnsignedLongLong(head), *b = PyLong_FromUnsignedLongLong(read);
            PyObject *r = a && b ? qc_call(self, s_advance_head, a, b, reclaim ? Py_True : Py_False)
                                 : NULL;
            Py_XDECREF(a);
            Py_XDECREF(b);
            if (!r)
                return -1;
            int moved = PyObject_IsTrue(r);
            Py_DECREF(r);
            return moved;
        }
        if (h.state == REC_TAKEN)
            break;
        p += h.size;
    }
    if (p == head)
        return 0;
    __atomic_store_n(QW64(self, Q_HEAD), p, __ATOMIC_RELEASE);
    return 1;
}

/* A test hook of queue_ring.py (_before_commit, _after_commit, _before_done), or NULL. */
static PyObject *qc_hook(PyObject *name)
{
    PyObject *h = q_hooks ? PyDict_GetItemWithError(q_hooks, name) : NULL;
    return h == Py_None ? NULL : h;
}

static int qc_run_hook(PyObject *hook)
{
    if (!hook)
        return 0;
    PyObject *r = PyObject_CallNoArgs(hook);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* ---- put */

typedef struct {
    const char *data;           /* one part (bytes/str), or NULL: parts/offsets */
    Py_ssize_t len;
    uint64_t n, data_length;
    int tag, flags;
    const char *desc;
    Py_ssize_t dl;
    Py_buffer *views;           /* the parts' buffers */
    Py_ssize_t *offsets;
    Py_ssize_t nparts;
    Py_buffer desc_view;        /* the descriptor's buffer (qc_rec_from) */
} QRec;

/* Section 11.3 put steps 1-5 for one record: 1 put, 0 no room, 2 completed, -1 error
 * (a corrupt word, raised). */
static int qc_write(QueueCore *self, const QRec *r, PyObject *before, PyObject *after)
{
    QState s;
    if (qc_state(self, &s))
        return qc_state_error(self);
    if (s.completed)
        return 2;
    if (s.count >= self->max_messages)
        return 0;
    uint64_t n = r->n, o = s.tail & self->mask, pad = o + n > self->cap ? self->cap - o : 0;
    if (self->cap - (s.tail - s.head) < n + pad)
        return 0;
    uint8_t *ring = self->ring;
    if (pad) {
        uint32_t ps = (uint32_t)pad;
        memcpy(ring + o, &ps, 4);
        ring[o + 4] = REC_PAD;
        memset(ring + o + 5, 0, 3);
        o = 0;
    }
    RecHead h = {(uint32_t)n, REC_READY, (uint8_t)r->tag, (uint8_t)r->flags, 0,
                 (uint32_t)r->dl, 0, 0, r->data_length};
    uint8_t *rec = ring + o, *end = rec + n, *d = rec + 32;
    memcpy(rec, &h, 32);
    if (r->dl) {
        memcpy(d, r->desc, r->dl);
        memset(d + r->dl, 0, A8((uint64_t)r->dl) - r->dl);
        d += A8((uint64_t)r->dl);
    }
    uint8_t *p = d;
    if (r->data) {
        memcpy(d, r->data, r->len);
        p = d + r->len;
    }
    else
        for (Py_ssize_t i = 0; i < r->nparts; i++) {
            uint8_t *start = d + r->offsets[i];
            if (start > p)
                memset(p, 0, start - p);
            memcpy(start, r->views[i].buf, r->views[i].len);
            p = start + r->views[i].len;
        }
    if (p < end)
        memset(p, 0, end - p);
    if (qc_run_hook(before) < 0)
        return -1;
    /* This store commits the message: every byte above is stored before it. */
    __atomic_store_n(QW64(self, Q_TAIL), s.tail + pad + n, __ATOMIC_RELEASE);
    self->last_end = s.tail + pad + n;
    if (qc_run_hook(after) < 0)
        return -1;
    *QW32(self, Q_COUNT) = s.count + 1;
    *QW32(self, Q_UNFINISHED) = s.unfinished < 0xFFFFFFFFu ? s.unfinished + 1 : s.unfinished;
    *QW64(self, Q_PUTS) = s.puts + 1;
    return wc_notify(self->R, 1) < 0 ? -1 : 1;
}

/* put/put_many's wait for room (section 11.3 put step 2), the lock held, *self* joined
 * to W on the first wait (*joined*): 1 put, 0 deadline, 2 completed, -1 error. */
static int qc_put_wait(QueueCore *self, const QRec *r, long long deadline, int *joined,
                       PyObject *before, PyObject *after)
{
    int res, w;
    for (;;) {
        QState s;
        if (qc_state(self, &s))
            return qc_state_error(self);
        int moved = qc_advance_head(self, s.head, s.read, 1);
        if (moved < 0)
            return -1;
        if (moved && (res = qc_write(self, r, before, after)) != 0)
            return res;
        if (deadline != NO_DEADLINE && now_ns() >= deadline)
            return 0;
        if (!*joined) {
            if (wc_join(self->W) < 0)
                return -1;
            *joined = 1;
        }
        if (wc_wait(self->W, slice_deadline(deadline), &w) < 0 || qc_recovery(self) < 0)
            return -1;
        if ((res = qc_write(self, r, before, after)) != 0)
            return res;
    }
}

/* The message of a bytes or str object (tag 1 or 2, no descriptor) if it goes
 * inline: 1; 0 when the Python path must do it (another type, a lone surrogate, a
 * message that goes out of line); -1 error. */
static int qc_simple(QueueCore *self, PyObject *obj, QRec *r)
{
    memset(r, 0, sizeof *r);
    if (PyBytes_CheckExact(obj)) {
        r->data = PyBytes_AS_STRING(obj);
        r->len = PyBytes_GET_SIZE(obj);
        r->tag = 1;
    }
    else if (PyUnicode_CheckExact(obj)) {
        r->data = PyUnicode_AsUTF8AndSize(obj, &r->len);
        if (!r->data) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear();          /* a lone surrogate: pickled by the Python path */
            return 0;
        }
        r->tag = 2;
    }
    else    /* bytearray too: another thread could resize it while a put waits */
        return 0;
    r->data_length = (uint64_t)r->len;
    r->n = 32 + A8((uint64_t)r->len);
    r->desc = "";
    return r->n <= self->inline_max;
}

/* Release the lock at the end of a call if this thread holds it (taking it again after a
 * wait can fail only with the lock not held): 0, or -1 when the unlock failed (raised,
 * with an error being raised as its context); an error being raised stays raised. */
static int qc_release(QueueCore *self)
{
    if (!lk_held_by_me(self->lock))
        return 0;
    PyObject *r = lk_exit(self->lock, Py_NewRef(Py_None));
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int qc_enter(QueueCore *self)
{
    if (qc_bound(self) < 0 || lk_enter(self->lock) < 0)
        return -1;
    if (qc_recovery(self) < 0) {
        lk_exit(self->lock, NULL);
        return -1;
    }
    return 0;
}

static int block_deadline(PyObject *block, PyObject *timeout, int *b, long long *deadline)
{
    if ((*b = PyObject_IsTrue(block)) < 0)
        return -1;
    *deadline = NO_DEADLINE;
    return *b ? deadline_arg(timeout, deadline) : 0;
}

static int qc_args3(const char *usage, Py_ssize_t nargs, PyObject *const *args,
                    PyObject **block, PyObject **timeout)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *block = nargs > 1 ? args[1] : Py_True;
    *timeout = nargs > 2 ? args[2] : Py_None;
    return 0;
}

static PyObject *qc_put_result(QueueCore *self, int res)
{
    if (res == 1)
        return Py_NewRef(Py_True);
    if (res == 2)
        PyErr_SetNone(q_signal);
    else if (res == 0)
        PyErr_SetNone(q_full);
    return NULL;
}

/* _fput(obj, block=True, timeout=None): put obj when it is bytes or str that goes inline: True; NotImplemented for anything else (the Python path puts it);
 * queue.Full, or QueueCompletedSignal. */
static PyObject *qc_fput(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *block, *timeout;
    QRec r;
    int b, res, joined = 0;
    long long deadline;
    if (qc_args3("_fput(obj, block=True, timeout=None)", nargs, args, &block, &timeout) < 0)
        return NULL;
    if ((res = qc_simple(self, args[0], &r)) <= 0)
        return res < 0 ? NULL : Py_NewRef(Py_NotImplemented);
    if (block_deadline(block, timeout, &b, &deadline) < 0 || qc_enter(self) < 0)
        return NULL;
    PyObject *before = qc_hook(s_before_commit), *after = qc_hook(s_after_commit);
    res = PyErr_Occurred() ? -1 : qc_write(self, &r, before, after);
    if (res == 0 && b)
        res = qc_put_wait(self, &r, deadline, &joined, before, after);
    if (joined)
        wc_leave_if_held(self->W);
    PyObject *result = res < 0 ? NULL : qc_put_result(self, res);
    return lk_held_by_me(self->lock) ? lk_exit(self->lock, result) : result;
}

/* The records of put_many's list *items*: 1 when every item is a simple message that
 * goes inline (*recs* filled), 0 when the Python path must do them, -1 error. */
static int qc_simple_all(QueueCore *self, PyObject *items, QRec **recs)
{
    Py_ssize_t n = PyList_GET_SIZE(items);
    *recs = PyMem_Malloc(sizeof(QRec) * (n ? n : 1));
    if (!*recs) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int ok = qc_simple(self, PyList_GET_ITEM(items, i), &(*recs)[i]);
        if (ok <= 0)
            return ok;
    }
    return 1;
}

/* _fput_many(list, block=True, timeout=None): put the items (bytes and str going inline) in order with the lock taken once while they fit: how many were put (fewer only
 * when the time ran out or block is false); NotImplemented when one item needs the
 * Python path; QueueCompletedSignal. The list must not change meanwhile: the items are
 * kept alive by it, and the glue passes a private list. */
static PyObject *qc_fput_many(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *block, *timeout, *items;
    QRec *recs = NULL;
    int b, res = 1, joined = 0;
    long long deadline;
    if (qc_args3("_fput_many(items, block=True, timeout=None)", nargs, args, &block,
                 &timeout) < 0)
        return NULL;
    items = args[0];
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "_fput_many: items must be a list");
        return NULL;
    }
    int simple = qc_simple_all(self, items, &recs);
    if (simple <= 0) {
        PyMem_Free(recs);
        return simple < 0 ? NULL : Py_NewRef(Py_NotImplemented);
    }
    /* the deadline from the start, as QueueRing.put_many */
    if (block_deadline(block, timeout, &b, &deadline) < 0 || qc_enter(self) < 0) {
        PyMem_Free(recs);
        return NULL;
    }
    Py_ssize_t total = PyList_GET_SIZE(items), done = 0;
    PyObject *before = qc_hook(s_before_commit), *after = qc_hook(s_after_commit);
    if (PyErr_Occurred())
        res = -1;
    while (res == 1 && done < total) {
        res = qc_write(self, &recs[done], before, after);
        if (res == 0 && b) {
            res = qc_put_wait(self, &recs[done], deadline, &joined, before, after);
            if (joined) {       /* put_many leaves W after each wait, as the Python path */
                wc_leave_if_held(self->W);
                joined = 0;
            }
        }
        if (res == 1)
            done++;
    }
    PyMem_Free(recs);
    PyObject *result = NULL;
    if (res == 2)
        PyErr_SetNone(q_signal);
    else if (res >= 0)
        result = PyLong_FromSsize_t(done);
    return lk_held_by_me(self->lock) ? lk_exit(self->lock, result) : result;
}

/* ---- put of records the Python path encoded (QueueRing.put / put_many) */

/* Release the buffers of a record made by qc_rec_from. */
static void qc_rec_free(QRec *r)
{
    if (r->views) {
        for (Py_ssize_t i = 0; i < r->nparts; i++)
            if (r->views[i].obj)
                PyBuffer_Release(&r->views[i]);
        PyMem_Free(r->views);
    }
    PyMem_Free(r->offsets);
    if (r->dl >= 0 && r->desc_view.obj)
        PyBuffer_Release(&r->desc_view);
    memset(r, 0, sizeof *r);
}

/* The record of QueueRing._write's arguments f[0..6] (n, tag, flags, descriptor, parts,
 * offsets, data_length): 1, with the buffers held until qc_rec_free (a bytearray cannot
 * be resized meanwhile); 0 when the Python path must write it (an argument this code
 * does not take as it is, a part that would not fit its record: the Python path
 * raises what it raises); -1 error. */
static int qc_rec_from(QueueCore *self, PyObject *const *f, QRec *r)
{
    memset(r, 0, sizeof *r);
    unsigned long long n = PyLong_AsUnsignedLongLong(f[0]), dlen = PyLong_AsUnsignedLongLong(f[6]);
    long tag = PyLong_AsLong(f[1]), flags = PyLong_AsLong(f[2]);
    if (PyErr_Occurred() || !PyList_CheckExact(f[4]) || !PyList_CheckExact(f[5])
        || PyList_GET_SIZE(f[4]) != PyList_GET_SIZE(f[5]) || tag < 1 || tag > MAX_TAG
        || flags & ~1L || n < 32 || n & 7 || n > self->record_max) {
        PyErr_Clear();
        return 0;
    }
    if (PyObject_GetBuffer(f[3], &r->desc_view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    r->n = n;
    r->data_length = dlen;
    r->tag = (int)tag;
    r->flags = (int)flags;
    r->desc = r->desc_view.buf;
    r->dl = r->desc_view.len;
    Py_ssize_t k = PyList_GET_SIZE(f[4]);
    r->views = PyMem_Calloc(k ? k : 1, sizeof(Py_buffer));
    r->offsets = PyMem_Calloc(k ? k : 1, sizeof(Py_ssize_t));
    if (!r->views || !r->offsets) {
        qc_rec_free(r);
        PyErr_NoMemory();
        return -1;
    }
    r->nparts = k;
    uint64_t room = n - 32, used = 0;
    if ((uint64_t)r->dl > room)
        goto python;
    room -= A8((uint64_t)r->dl);
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_ssize_t off = PyLong_AsSsize_t(PyList_GET_ITEM(f[5], i));
        if ((off == -1 && PyErr_Occurred()) || off < 0
            || PyObject_GetBuffer(PyList_GET_ITEM(f[4], i), &r->views[i], PyBUF_C_CONTIGUOUS) < 0) {
            PyErr_Clear();
            goto python;
        }
        r->offsets[i] = off;
        uint64_t end = (uint64_t)off + (uint64_t)r->views[i].len;
        if ((uint64_t)off < used || end > room)
            goto python;        /* parts in order, within the record */
        used = end;
    }
    return 1;
python:
    qc_rec_free(r);
    return 0;
}

/* _cput(n, tag, flags, descriptor, parts, offsets, data_length, block, timeout): the
 * compiled QueueRing.put of one encoded record: True (an out-of-line record: its end
 * position p + size, which the reuse of its data segment needs, docs/format.md 11.5),
 * False (no room in time); QueueCompletedSignal; NotImplemented when the Python path
 * must write it. */
static PyObject *qc_cput(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    QRec r;
    int b, res, joined = 0;
    long long deadline;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "_cput(n, tag, flags, descriptor, parts, offsets, "
                        "data_length, block, timeout)");
        return NULL;
    }
    if ((res = qc_rec_from(self, args, &r)) <= 0)
        return res < 0 ? NULL : Py_NewRef(Py_NotImplemented);
    int out_of_line = r.flags != 0;
    if ((b = PyObject_IsTrue(args[7])) < 0 || qc_enter(self) < 0) {
        qc_rec_free(&r);
        return NULL;
    }
    PyObject *before = qc_hook(s_before_commit), *after = qc_hook(s_after_commit);
    res = PyErr_Occurred() ? -1 : qc_write(self, &r, before, after);
    if (res == 0 && b) {
        if (deadline_arg(args[8], &deadline) < 0)
            res = -1;
        else
            res = qc_put_wait(self, &r, deadline, &joined, before, after);
    }
    if (joined)
        wc_leave_if_held(self->W);
    qc_rec_free(&r);
    PyObject *result = NULL;
    if (res == 1 && out_of_line)
        result = PyLong_FromUnsignedLongLong(self->last_end);    /* the lock still held */
    else if (res == 1 || res == 0)
        result = Py_NewRef(res ? Py_True : Py_False);
    else if (res == 2)
        PyErr_SetNone(q_signal);
    return lk_held_by_me(self->lock) ? lk_exit(self->lock, result) : result;
}

/* _cput_many(records, block, timeout): the compiled QueueRing.put_many of a list of
 * _write argument tuples: how many were put; QueueCompletedSignal; NotImplemented when
 * one of them needs the Python path (then nothing was put). */
static PyObject *qc_cput_many(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int b, res = 1, joined = 0;
    long long deadline = NO_DEADLINE;
    if (nargs != 3 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_cput_many(records: list, block, timeout)");
        return NULL;
    }
    PyObject *records = args[0];
    Py_ssize_t total = PyList_GET_SIZE(records), made = 0, done = 0;
    QRec *recs = PyMem_Calloc(total ? total : 1, sizeof(QRec));
    if (!recs)
        return PyErr_NoMemory();
    for (; made < total; made++) {
        PyObject *t = PyList_GET_ITEM(records, made);
#ifdef Py_LIMITED_API
        PyObject *fields[7] = {NULL};
        if (PyTuple_CheckExact(t) && PyTuple_GET_SIZE(t) == 7)
            for (int i = 0; i < 7; i++)
                fields[i] = PyTuple_GET_ITEM(t, i);
        int ok = fields[0] ? qc_rec_from(self, fields, &recs[made]) : 0;
#else
        int ok = PyTuple_CheckExact(t) && PyTuple_GET_SIZE(t) == 7
                 ? qc_rec_from(self, &PyTuple_GET_ITEM(t, 0), &recs[made]) : 0;
#endif
        if (ok <= 0) {
            res = ok < 0 ? -1 : 3;
            break;
        }
    }
    if (res == 1 && ((b = PyObject_IsTrue(args[1])) < 0
                     || (b && deadline_arg(args[2], &deadline) < 0)))
        res = -1;
    if (res == 1 && qc_enter(self) < 0)
        res = -4;
    PyObject *before = NULL, *after = NULL;
    if (res == 1) {
        before = qc_hook(s_before_commit);
        after = qc_hook(s_after_commit);
        if (PyErr_Occurred())
            res = -1;
    }
    while (res == 1 && done < total) {
        res = qc_write(self, &recs[done], before, after);
        if (res == 0 && b) {
            res = qc_put_wait(self, &recs[done], deadline, &joined, before, after);
            if (joined) {
                wc_leave_if_held(self->W);
                joined = 0;
            }
        }
        if (res == 1)
            done++;
    }
    for (Py_ssize_t i = 0; i < made; i++)
        qc_rec_free(&recs[i]);
    PyMem_Free(recs);
    if (res == 3)
        return Py_NewRef(Py_NotImplemented);
    if (res == -4)
        return NULL;
    PyObject *result = NULL;
    if (res == 2)
        PyErr_SetNone(q_signal);
    else if (res >= 0)
        result = PyLong_FromSsize_t(done);
    return lk_held_by_me(self->lock) ? lk_exit(self->lock, result) : result;
}

/* ---- get */

enum { G_ERROR = -1, G_EMPTY = 0, G_GOT = 1, G_COMPLETED = 2 };

/* Section 11.3 get steps 1, 3-5 for one message, the lock held: G_GOT with *out* (a
 * bytes or str; or a tuple (tag, descriptor, data) to decode after the release; or the
 * Message of the Python path), G_EMPTY, G_COMPLETED, G_ERROR. */
static int qc_read(QueueCore *self, PyObject **out, PyObject *before_done)
{
    QState s;
    RecHead h;
    *out = NULL;
    if (qc_state(self, &s))
        return qc_state_error(self);
    uint64_t read = s.read, o = 0;
    uint8_t *ring = self->ring;
    while (read != s.tail) {
        o = read & self->mask;
        if (self->cap - o >= 32) {
            memcpy(&h, ring + o, 32);
            /* the common record: an inline ready message ending within the ring and tail */
            if (h.state == REC_READY && !h.flags && h.tag >= 1 && h.tag <= MAX_TAG
                && h.data_length <= self->cap
                && h.size == 32 + A8((uint64_t)h.desc_length) + A8(h.data_length)
                && o + h.size <= self->cap && read + h.size <= s.tail)
                break;
        }
        if (qc_record(self, read, s.tail, &h) || h.state == REC_READY || h.state == REC_TAKEN)
            goto python;    /* corrupt, out of line, or taken beyond read: the Python path */
        read += h.size;
    }
    if (read == s.tail) {
        if (read != s.read) {
            __atomic_store_n(QW64(self, Q_READ), read, __ATOMIC_RELEASE);
            if (qc_advance_head(self, s.head, read, 0) < 0)
                return G_ERROR;
        }
        return s.completed ? G_COMPLETED : G_EMPTY;
    }
    if (!s.count)
        goto python;        /* the Python path raises the corrupt count */
    uint8_t *d = ring + o + 32;
    uint64_t dl = h.desc_length;
    PyObject *item = NULL;
    if (!dl && h.tag == 1)
        item = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)h.data_length);
    else if (!dl && h.tag == 2) {
        item = PyUnicode_DecodeUTF8((const char *)d, (Py_ssize_t)h.data_length, NULL);
        if (!item && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            PyErr_Clear();      /* not UTF-8: the message is consumed, decode() raises */
    }
    if (!item && !PyErr_Occurred()) {
        PyObject *desc = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)dl);
        PyObject *raw = PyByteArray_FromStringAndSize((const char *)d + A8(dl),
                                                      (Py_ssize_t)h.data_length);
        PyObject *view = raw ? PyMemoryView_FromObject(raw) : NULL;
        Py_XDECREF(raw);
        if (desc && view)
            item = Py_BuildValue("(iNN)", (int)h.tag, desc, view);
        else {
            Py_XDECREF(desc);
            Py_XDECREF(view);
        }
    }
    if (!item)
        return G_ERROR;
    if (qc_run_hook(before_done) < 0) {
        Py_DECREF(item);
        return G_ERROR;
    }
    uint64_t position = read;
    ring[o + 4] = REC_DONE;
    read += h.size;
    __atomic_store_n(QW64(self, Q_READ), read, __ATOMIC_RELEASE);
    *QW32(self, Q_COUNT) = s.count - 1;
    *QW64(self, Q_GETS) = s.gets + 1;
    int moved;
    if (s.head == position) {   /* nothing older holds bytes: the head follows */
        __atomic_store_n(QW64(self, Q_HEAD), read, __ATOMIC_RELEASE);
        moved = 1;
    }
    else
        moved = qc_advance_head(self, s.head, read, 0);
    if (moved < 0 || ((moved || s.count == self->max_messages)
                      && wc_notify(self->W, VALUE_MAX) < 0)) {
        Py_DECREF(item);
        return G_ERROR;
    }
    *out = item;
    return G_GOT;
python:;
    PyObject *m = PyObject_CallMethodNoArgs((PyObject *)self, s_read_one);
    if (!m) {
        if (PyErr_ExceptionMatches(q_signal)) {
            PyErr_Clear();
            return G_COMPLETED;
        }
        return G_ERROR;
    }
    if (m == Py_None) {
        Py_DECREF(m);
        return G_EMPTY;
    }
    *out = m;
    return G_GOT;
}

/* The object of what qc_read got (after the release): bytes and str as they are, the
 * others through queue_fast.decode(tag, descriptor, data, name). */
static PyObject *qc_finish(QueueCore *self, PyObject *item)
{
    if (PyBytes_CheckExact(item) || PyUnicode_CheckExact(item))
        return item;
    PyObject *tag, *desc, *data;
    if (PyTuple_CheckExact(item)) {
        tag = Py_NewRef(PyTuple_GET_ITEM(item, 0));
        desc = Py_NewRef(PyTuple_GET_ITEM(item, 1));
        data = Py_NewRef(PyTuple_GET_ITEM(item, 2));
    }
    else {          /* a Message of QueueRing._read_one */
        tag = PyObject_GetAttr(item, s_tag);
        desc = PyObject_GetAttr(item, s_descriptor);
        data = PyObject_GetAttr(item, s_data);
    }
    Py_DECREF(item);
    PyObject *r = NULL;
    if (tag && desc && data)
        r = PyObject_CallFunctionObjArgs(q_decode, tag, desc, data, self->name, NULL);
    Py_XDECREF(tag);
    Py_XDECREF(desc);
    Py_XDECREF(data);
    return r;
}

/* get's wait for a message (section 11.3 get step 2), the lock held: as qc_read. */
static int qc_get_wait(QueueCore *self, long long deadline, PyObject **out,
                       PyObject *before_done)
{
    int res, w, joined = 0;
    for (;;) {
        if (deadline != NO_DEADLINE && now_ns() >= deadline) {
            res = G_EMPTY;
            break;
        }
        if (!joined) {
            if (wc_join(self->R) < 0)
                return G_ERROR;
            joined = 1;
        }
        if (wc_wait(self->R, deadline, &w) < 0 || qc_recovery(self) < 0) {
            res = G_ERROR;
            break;
        }
        if ((res = qc_read(self, out, before_done)) != G_EMPTY)
            break;
    }
    wc_leave_if_held(self->R);
    return res;
}

static int qc_get_hooks(PyObject **before_done)
{
    *before_done = qc_hook(s_before_done);
    return PyErr_Occurred() ? -1 : 0;
}

/* _fget(block=True, timeout=None): the next message's object; queue.Empty, or
 * QueueCompletedSignal when the queue is completed and drained. */
static PyObject *qc_fget(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *block = nargs > 0 ? args[0] : Py_True, *timeout = nargs > 1 ? args[1] : Py_None;
    PyObject *item = NULL, *before_done;
    int b, res;
    long long deadline;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "_fget(block=True, timeout=None)");
        return NULL;
    }
    if (self->undelivered && PyList_GET_SIZE(self->undelivered))
        return PyObject_CallFunctionObjArgs(q_deliver, self->undelivered, Py_None, self->name,
                                            NULL);
    if ((b = PyObject_IsTrue(block)) < 0 || qc_get_hooks(&before_done) < 0
        || qc_enter(self) < 0)
        return NULL;
    res = qc_read(self, &item, before_done);
    if (res == G_EMPTY && b) {
        if (deadline_arg(timeout, &deadline) < 0)
            res = G_ERROR;
        else
            res = qc_get_wait(self, deadline, &item, before_done);
    }
    if (qc_release(self) < 0) {
        if (res == G_GOT)
            Py_DECREF(item);
        return NULL;
    }
    if (res == G_GOT)
        return qc_finish(self, item);
    if (res == G_EMPTY)
        PyErr_SetNone(q_empty);
    else if (res == G_COMPLETED)
        PyErr_SetNone(q_signal);
    return NULL;
}

/* _fget_many(max_items, block=True, timeout=None): a list of 1 to max_items objects,
 * waiting (as asked) for the first only; queue.Empty when none came; QueueCompletedSignal
 * when completed and drained before the first. Messages taken by an earlier call and not
 * handed over come first; an error after the first message, or a message to decode, goes
 * through queue_delivery.finish_many, which keeps what cannot be handed over now. */
static PyObject *qc_fget_many(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *block, *timeout, *item = NULL, *before_done, *batch_error = NULL;
    int b, res;
    long long deadline;
    if (qc_args3("_fget_many(max_items, block=True, timeout=None)", nargs, args, &block,
                 &timeout) < 0)
        return NULL;
    Py_ssize_t max_items = PyLong_AsSsize_t(args[0]);
    if (max_items == -1 && PyErr_Occurred())
        return NULL;
    if (self->undelivered && PyList_GET_SIZE(self->undelivered))
        return PyObject_CallFunctionObjArgs(q_deliver, self->undelivered, args[0], self->name,
                                            NULL);
    PyObject *got = PyList_New(0);
    if (!got)
        return NULL;
    if ((b = PyObject_IsTrue(block)) < 0 || qc_get_hooks(&before_done) < 0
        || qc_enter(self) < 0) {
        Py_DECREF(got);
        return NULL;
    }
    res = qc_read(self, &item, before_done);
    if (res == G_EMPTY && b) {
        if (deadline_arg(timeout, &deadline) < 0)
            res = G_ERROR;
        else
            res = qc_get_wait(self, deadline, &item, before_done);
    }
    while (res == G_GOT) {
        int bad = PyList_Append(got, item);
        Py_DECREF(item);
        if (bad < 0) {
            res = G_ERROR;
            break;
        }
        if (PyList_GET_SIZE(got) >= max_items)
            break;
        res = qc_read(self, &item, before_done);
        if (res == G_GOT)
            continue;
        if (res == G_ERROR)                 /* the messages taken so far are not lost */
            batch_error = take_raised();
        res = G_GOT;
        break;
    }
    if (qc_release(self) < 0) {
        res = G_ERROR;
        Py_CLEAR(batch_error);
    }
    if (res == G_GOT) {
        Py_ssize_t n = PyList_GET_SIZE(got), i = 0;
        if (!batch_error)
            for (; i < n; i++) {
                PyObject *x = PyList_GET_ITEM(got, i);
                if (!PyBytes_CheckExact(x) && !PyUnicode_CheckExact(x))
                    break;
            }
        if (i == n)
            return got;         /* bytes and str only, as they are */
        PyObject *r = PyObject_CallFunctionObjArgs(q_finish_many, self->undelivered, got,
                                                   batch_error ? batch_error : Py_None,
                                                   self->name, NULL);
        Py_DECREF(got);
        Py_XDECREF(batch_error);
        return r;
    }
    Py_DECREF(got);
    if (res == G_EMPTY)
        PyErr_SetNone(q_empty);
    else if (res == G_COMPLETED)
        PyErr_SetNone(q_signal);
    return NULL;
}

/* _ctask_done(): QueueRing.task_done (section 11.3 task_done); ValueError when called more
 * times than messages were put. */
static PyObject *qc_task_done(QueueCore *self, PyObject *unused)
{
    QState s;
    if (qc_enter(self) < 0)
        return NULL;
    PyObject *result = NULL;
    if (qc_state(self, &s))
        qc_state_error(self);
    else if (!s.unfinished)
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
    else {
        *QW32(self, Q_UNFINISHED) = s.unfinished - 1;
        if (s.unfinished != 1 || wc_notify(self->J, VALUE_MAX) == 0)
            result = Py_NewRef(Py_None);
    }
    return lk_exit(self->lock, result);
}

/* _ccount(): QueueRing.count, the ready messages (validated words). */
static PyObject *qc_count(QueueCore *self, PyObject *unused)
{
    QState s;
    if (qc_enter(self) < 0)
        return NULL;
    PyObject *result = NULL;
    if (qc_state(self, &s))
        qc_state_error(self);
    else
        result = PyLong_FromUnsignedLong(s.count);
    return lk_exit(self->lock, result);
}

/* _qbind(area, recoveries, lock, R, W, J, capacity, max_messages, name): area a ctypes array
 * over the data area (control block and ring), recoveries the header's recovery_count
 * (ctypes c_uint64), the lock a LockCore, R and W the ring's WaitCores. */
static PyObject *qc_qbind(QueueCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10 || !PyList_CheckExact(args[9])) {
        PyErr_SetString(PyExc_TypeError, "_qbind(area, recoveries, lock, R, W, J, capacity, "
                        "max_messages, name, undelivered)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[2], &LockCoreType) || !PyObject_TypeCheck(args[3], &WaitCoreType)
        || !PyObject_TypeCheck(args[4], &WaitCoreType) || !PyObject_TypeCheck(args[5], &WaitCoreType)) {
        PyErr_SetString(PyExc_TypeError, "_qbind: a LockCore and three WaitCores");
        return NULL;
    }
    unsigned long long cap = PyLong_AsUnsignedLongLong(args[6]);
    if (cap == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long mm = PyLong_AsUnsignedLong(args[7]);
    if (mm == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (cap < 4096 || cap & (cap - 1) || mm < 1 || mm > VALUE_MAX) {
        PyErr_SetString(PyExc_ValueError, "_qbind: capacity a power of two >= 4096, "
                        "max_messages 1 to 0x7FFFFFFF");
        return NULL;
    }
    void *area, *rec;
    if (buffer_address(args[0], (Py_ssize_t)(Q_RING + cap), &area) < 0
        || buffer_address(args[1], 8, &rec) < 0)
        return NULL;
    Py_XSETREF(self->area_obj, Py_NewRef(args[0]));
    Py_XSETREF(self->rec_obj, Py_NewRef(args[1]));
    Py_XSETREF(self->lock, (LockCore *)Py_NewRef(args[2]));
    Py_XSETREF(self->R, (WaitCore *)Py_NewRef(args[3]));
    Py_XSETREF(self->W, (WaitCore *)Py_NewRef(args[4]));
    Py_XSETREF(self->J, (WaitCore *)Py_NewRef(args[5]));
    Py_XSETREF(self->name, Py_NewRef(args[8]));
    Py_XSETREF(self->undelivered, Py_NewRef(args[9]));
    self->base = area;
    self->ring = (uint8_t *)area + Q_RING;
    self->cap = cap;
    self->mask = cap - 1;
    self->inline_max = cap / 4 < MAX_INLINE_RECORD ? cap / 4 : MAX_INLINE_RECORD;
    self->record_max = cap / 2 < MAX_RECORD ? cap / 2 : MAX_RECORD;
    self->max_messages = (uint32_t)mm;
    self->recoveries = rec;
    self->seen = __atomic_load_n(self->recoveries, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

static void qc_dealloc(QueueCore *self)
{
    Py_CLEAR(self->area_obj);
    Py_CLEAR(self->rec_obj);
    Py_CLEAR(self->name);
    Py_CLEAR(self->undelivered);
    Py_CLEAR(self->lock);
    Py_CLEAR(self->R);
    Py_CLEAR(self->W);
    Py_CLEAR(self->J);
    TP_FREE(self);
}

/* queue_setup(signal, full, empty, decode, hooks, finish_many, deliver): the exceptions
 * (QueueCompletedSignal, queue.Full, queue.Empty), queue_fast.decode, queue_ring's globals
 * (its test hooks), and queue_delivery's finish_many and deliver. */
static PyObject *mod_queue_setup(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "queue_setup(signal, full, empty, decode, hooks, "
                        "finish_many, deliver)");
        return NULL;
    }
    Py_XSETREF(q_finish_many, Py_NewRef(args[5]));
    Py_XSETREF(q_deliver, Py_NewRef(args[6]));
    Py_XSETREF(q_signal, Py_NewRef(args[0]));
    Py_XSETREF(q_full, Py_NewRef(args[1]));
    Py_XSETREF(q_empty, Py_NewRef(args[2]));
    Py_XSETREF(q_decode, Py_NewRef(args[3]));
    Py_XSETREF(q_hooks, Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

#define QFAST(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef qc_methods[] = {
    {"_qbind", QFAST(qc_qbind),
     "_qbind(area, recoveries, lock, R, W, J, capacity, max_messages, name, undelivered):\n"
     "bind the ring."},
    {"_ctask_done", (PyCFunction)qc_task_done, METH_NOARGS,
     "_ctask_done(): QueueRing.task_done; ValueError when called too many times."},
    {"_ccount", (PyCFunction)qc_count, METH_NOARGS, "_ccount(): QueueRing.count."},
    {"_fput", QFAST(qc_fput),
     "_fput(obj, block=True, timeout=None): put bytes/str going inline: True;\n"
     "NotImplemented for the Python path; queue.Full; QueueCompletedSignal."},
    {"_fput_many", QFAST(qc_fput_many),
     "_fput_many(items, block=True, timeout=None): put a list of bytes/str:\n"
     "how many were put; NotImplemented for the Python path; QueueCompletedSignal."},
    {"_cput", QFAST(qc_cput),
     "_cput(n, tag, flags, descriptor, parts, offsets, data_length, block, timeout): put one\n"
     "encoded record (QueueRing.put): True, False; NotImplemented for the Python path."},
    {"_cput_many", QFAST(qc_cput_many),
     "_cput_many(records, block, timeout): put encoded records (QueueRing.put_many): how\n"
     "many were put; NotImplemented for the Python path."},
    {"_fget", QFAST(qc_fget),
     "_fget(block=True, timeout=None): the next message's object; queue.Empty;\n"
     "QueueCompletedSignal."},
    {"_fget_many", QFAST(qc_fget_many),
     "_fget_many(max_items, block=True, timeout=None): a list of objects (waits for the\n"
     "first only); queue.Empty; QueueCompletedSignal."},
    {NULL}
};

#ifndef Py_LIMITED_API
static PyTypeObject QueueCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sharedbridge._platform._fastlock.QueueCore",
    .tp_basicsize = sizeof(QueueCore),
    .tp_dealloc = (destructor)qc_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The ring operations of a queue segment (compiled; see queue_ring.py).",
    .tp_methods = qc_methods,
    .tp_new = PyType_GenericNew,
};
#else
static PyType_Slot QueueCoreType_slots[] = {
    {Py_tp_dealloc, (void *)((destructor)qc_dealloc)},
    {Py_tp_doc, (void *)("The ring operations of a queue segment (compiled; see queue_ring.py).")},
    {Py_tp_methods, (void *)(qc_methods)},
    {Py_tp_new, (void *)(PyType_GenericNew)},
    {0, NULL}
};
static PyType_Spec QueueCoreType_spec = {
    "sharedbridge._platform._fastlock.QueueCore", sizeof(QueueCore), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, QueueCoreType_slots,
};
#endif

/* ------------------------------------------------------------------ signal re-send */
/* CPython runs a Python-level signal handler only in the main thread, between bytecodes:
 * its C handler just trips a flag. When the signal arrives just before the main thread
 * enters a blocking C call (a multiprocessing SemLock's sem_wait in a Pool worker), or
 * is delivered to another thread while the main thread is blocked, nothing interrupts
 * that call and the handler never runs (python/cpython#73945): a SIGTERM that should
 * have ended the process is lost. chain_resend(sig) puts a wrapper in front of CPython's
 * C handler: it calls that handler, then arms a one-shot POSIX timer that sends the same
 * signal to the main thread ~50 ms later. That delivery interrupts the blocking call
 * (EINTR: CPython installs its handlers without SA_RESTART), whose retry loop calls
 * PyErr_CheckSignals and so runs the Python handler; each delivery re-arms the timer
 * until the Python handler calls chain_stop(sig). Everything in the wrapper is
 * async-signal-safe (timer_settime, getpid). Linux only (SIGEV_THREAD_ID). */

#if defined(__linux__) && defined(SIGEV_THREAD_ID)
#define HAVE_RESEND 1
#ifndef sigev_notify_thread_id          /* older glibc headers do not name the field */
#define sigev_notify_thread_id _sigev_un._tid
#endif
#define RESEND_NS 50000000L

static struct sigaction resend_prev[NSIG];     /* CPython's action, called first */
static timer_t resend_timer[NSIG];
static volatile sig_atomic_t resend_active[NSIG];  /* 1: the wrapper arms the timer */
static volatile pid_t resend_pid[NSIG];        /* the process the timer belongs to */

static void resend_wrapper(int sig, siginfo_t *info, void *ctx)
{
    int saved = errno;
    struct sigaction *prev = &resend_prev[sig];
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction)
            prev->sa_sigaction(sig, info, ctx);
    }
    else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN)
        prev->sa_handler(sig);
    /* The pid check: a fork child inherits this action and the timer ids, but not the
     * timers (a child's own timer may even reuse an id): it arms nothing until
     * chain_resend has created its own timer. */
    if (resend_active[sig] && resend_pid[sig] == getpid()) {
        struct itimerspec when = {{0, 0}, {0, RESEND_NS}};
        timer_settime(resend_timer[sig], 0, &when, NULL);
    }
    errno = saved;
}

static int signum_arg(PyObject *arg)
{
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred())
        return -1;
    if (sig <= 0 || sig >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number %ld out of range 1..%d", sig, NSIG - 1);
        return -1;
    }
    return (int)sig;
}
#endif

static PyObject *chain_resend(PyObject *mod, PyObject *arg)
{
#ifdef HAVE_RESEND
    int sig = signum_arg(arg);
    if (sig < 0)
        return NULL;
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    int ours = (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == resend_wrapper;
    if (!ours && !(cur.sa_flags & SA_SIGINFO)
        && (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))
        Py_RETURN_FALSE;        /* no handler to chain to: the default action needs no help */
    pid_t pid = getpid();
    if (resend_pid[sig] != pid) {
        /* The main thread of this process (the caller: signal.signal() only works there,
         * and after a fork the forking thread is the child's main thread). */
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = sig;
        ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
        timer_t t;
        if (timer_create(CLOCK_MONOTONIC, &ev, &t) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        resend_active[sig] = 0;
        resend_timer[sig] = t;
        resend_pid[sig] = pid;
    }
    if (!ours) {
        /* Same mask and flags as CPython's action (SA_ONSTACK, no SA_RESTART: the
         * re-sent signal must interrupt the blocking call), plus SA_SIGINFO. */
        struct sigaction act = cur;
        act.sa_sigaction = resend_wrapper;
        act.sa_flags |= SA_SIGINFO;
        resend_prev[sig] = cur;     /* written before the wrapper can run */
        if (sigaction(sig, &act, NULL) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    resend_active[sig] = 1;
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *chain_stop(PyObject *mod, PyObject *arg)
{
#ifdef HAVE_RESEND
    int sig = signum_arg(arg);
    if (sig < 0)
        return NULL;
    resend_active[sig] = 0;
    if (resend_pid[sig] == getpid()) {
        struct itimerspec never = {{0, 0}, {0, 0}};
        timer_settime(resend_timer[sig], 0, &never, NULL);
    }
#endif
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ attach */
/* The system calls of docs/format.md section 6.2 steps 1 to 4 and 6, for
 * attach_checks.py, which applies every rule to what they return (this file checks
 * nothing of a header); its twin without this module is attach_checks.py's own calls
 * (os.open/shm_open, os.fstat, os.pread, mapping.py's ctypes mmap). */

/* attach_read(key, poll_len, min_size, copy_len): open the segment object *key* (a bare
 * name: shm_open("/" + key, O_RDWR); "/...": open(key, O_RDWR | O_NOFOLLOW | O_CLOEXEC),
 * as backend.py does), fstat it and, for a regular file of at least min_size bytes, pread
 * poll_len bytes at 0 and then min(size, copy_len) bytes at 0 (the private copy is read
 * after the bytes showing the state, as section 6.2 step 4 requires). Returns (fd,
 * st_mode, st_uid, st_dev, st_ino, st_size, poll, copy), poll and copy None when not
 * read, a read shorter than asked as it was read; None when any call failed (nothing is
 * left open): the caller then does the same steps itself, whose errors it reports. */
static PyObject *mod_attach_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "attach_read(key: str, poll_len, min_size, copy_len)");
        return NULL;
    }
    Py_ssize_t poll_len = PyLong_AsSsize_t(args[1]);
    Py_ssize_t min_size = poll_len == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[2]);
    Py_ssize_t copy_len = min_size == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[3]);
    if (copy_len == -1 && PyErr_Occurred())
        return NULL;
    if (poll_len <= 0 || copy_len <= 0 || poll_len > (1 << 20) || copy_len > (1 << 20)
        || min_size < poll_len) {
        PyErr_SetString(PyExc_ValueError, "attach_read: 0 < poll_len <= min_size, 0 < copy_len <= 1 MiB");
        return NULL;
    }
    PyObject *encoded = PyUnicode_EncodeFSDefault(args[0]);
    if (!encoded)
        return NULL;
    const char *key = PyBytes_AS_STRING(encoded);
    Py_ssize_t key_len = PyBytes_GET_SIZE(encoded);
    if (key_len == 0 || (Py_ssize_t)strlen(key) != key_len) {    /* the caller's errors */
        Py_DECREF(encoded);
        Py_RETURN_NONE;
    }
    char *buf = PyMem_Malloc(poll_len + copy_len + key_len + 2);
    if (!buf) {
        Py_DECREF(encoded);
        return PyErr_NoMemory();
    }
    char *poll = buf, *copy = buf + poll_len, *shm_name = copy + copy_len;
    int fd, ok = 0, is_path = key[0] == '/';
    struct stat st;
    ssize_t got_poll = -1, got_copy = -1;
    if (!is_path) {
        shm_name[0] = '/';
        memcpy(shm_name + 1, key, key_len + 1);
    }
    Py_BEGIN_ALLOW_THREADS
    fd = is_path ? open(key, O_RDWR | O_NOFOLLOW | O_CLOEXEC) : shm_open(shm_name, O_RDWR, 0);
    if (fd >= 0 && fstat(fd, &st) == 0) {
        ok = 1;
        if (S_ISREG(st.st_mode) && st.st_size >= min_size) {
            got_poll = pread(fd, poll, poll_len, 0);
            Py_ssize_t n = st.st_size < copy_len ? (Py_ssize_t)st.st_size : copy_len;
            got_copy = got_poll < 0 ? -1 : pread(fd, copy, n, 0);
            ok = got_copy >= 0;
        }
    }
    if (fd >= 0 && !ok)
        close(fd);
    Py_END_ALLOW_THREADS
    Py_DECREF(encoded);
    PyObject *result = NULL;
    if (!ok) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *p = got_poll < 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize(poll, got_poll);
        PyObject *c = got_copy < 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize(copy, got_copy);
        if (p && c)
            result = Py_BuildValue("(iIIKKLNNI)", fd, (unsigned int)st.st_mode,
                                   (unsigned int)st.st_uid, (unsigned long long)st.st_dev,
                                   (unsigned long long)st.st_ino, (long long)st.st_size, p, c,
                                   (unsigned int)geteuid());
        else {
            Py_XDECREF(p);
            Py_XDECREF(c);
        }
        if (!result)
            close(fd);
    }
    PyMem_Free(buf);
    return result;
}

/* The mapping's munmap, when its capsule (in the mapping view's __dict__) is collected. */
#define MAPPING_CAPSULE "sharedbridge.mapping"

static void unmap_capsule(PyObject *capsule)
{
    void *addr = PyCapsule_GetPointer(capsule, MAPPING_CAPSULE);
    size_t length = (size_t)(uintptr_t)PyCapsule_GetContext(capsule);
    if (addr)
        munmap(addr, length);
    else
        PyErr_Clear();
}

static PyObject *s_from_address, *s_sb_unmapper, *g_c_char;

/* map_shared(fd, length): mapping.map_shared's mmap, made here: mmap(length, read-write,
 * MAP_SHARED) of fd at 0, returned as (ctypes.c_char * length).from_address(address)
 * whose __dict__["_sb_unmapper"] unmaps it when collected (after every view of it).
 * mapping.py's errors: ValueError (length <= 0), OverflowError (2**63 or more),
 * OSError(errno, strerror) when mmap fails. */
static PyObject *mod_map_shared(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "map_shared(fd, length)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int overflow;
    long long length = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (length == -1 && PyErr_Occurred())
        return NULL;
    /* mapping.py's errors, in its order */
    if (overflow < 0 || (!overflow && length <= 0)) {
        PyErr_SetString(PyExc_ValueError, "cannot map an empty segment");
        return NULL;
    }
    if (overflow > 0) {
        PyErr_SetString(PyExc_OverflowError, "mapping length too large");
        return NULL;
    }
    if (!g_c_char) {
        PyObject *ctypes = PyImport_ImportModule("ctypes");
        if (!ctypes)
            return NULL;
        g_c_char = PyObject_GetAttrString(ctypes, "c_char");
        Py_DECREF(ctypes);
        if (!g_c_char)
            return NULL;
    }
    void *addr;
    Py_BEGIN_ALLOW_THREADS
    addr = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    Py_END_ALLOW_THREADS
    if (addr == MAP_FAILED)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *view = NULL, *type = NULL, *n = NULL, *where = NULL;
    PyObject *capsule = PyCapsule_New(addr, MAPPING_CAPSULE, unmap_capsule);
    if (!capsule) {
        munmap(addr, (size_t)length);
        return NULL;
    }
    if (PyCapsule_SetContext(capsule, (void *)(uintptr_t)length) < 0) {
        PyCapsule_SetDestructor(capsule, NULL);
        munmap(addr, (size_t)length);
        goto done;
    }
    if (!(n = PyLong_FromLongLong(length)) || !(type = PyNumber_Multiply(g_c_char, n))
        || !(where = PyLong_FromVoidPtr(addr))
        || !(view = PyObject_CallMethodOneArg(type, s_from_address, where)))
        goto done;
    if (PyObject_SetAttr(view, s_sb_unmapper, capsule) < 0)
        Py_CLEAR(view);
done:
    Py_XDECREF(n);
    Py_XDECREF(type);
    Py_XDECREF(where);
    Py_DECREF(capsule);
    return view;
}

/* map_sized(fd, length): (map_shared(fd, length), the object's size right after the
 * mmap: lseek(fd, 0, SEEK_END), or -1 when that failed: the caller asks again itself, for
 * its error). Section 6.2 step 6: the size check after the mapping, in the same call. */
static PyObject *mod_map_sized(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *view = mod_map_shared(mod, args, nargs);
    if (!view)
        return NULL;
    int fd = (int)PyLong_AsLong(args[0]);      /* map_shared checked it */
    off_t size;
    Py_BEGIN_ALLOW_THREADS
    size = lseek(fd, 0, SEEK_END);
    Py_END_ALLOW_THREADS
    PyObject *n = PyLong_FromLongLong(size < 0 ? -1 : (long long)size);
    PyObject *result = n ? PyTuple_Pack(2, view, n) : NULL;
    Py_XDECREF(n);
    Py_DECREF(view);
    return result;
}

/* reuse_check(fd, path, dev, ino, buffer, state_offset, ready): checks (2) and (3) of
 * docs/format.md section 11.5 "Reuse" on a pooled data segment, the steps of
 * queue_data_segments._exclusive_check in one call: flock(fd, LOCK_EX | LOCK_NB); if
 * refused (another process holds the segment: on Linux the failed conversion dropped this
 * description's shared lock) flock(fd, LOCK_SH) again and return False; else read the u32
 * state at state_offset of buffer (the segment's mapping), lstat path (its name's file)
 * and compare its device and inode with dev and ino, then flock(fd, LOCK_SH) and return
 * True (state == ready, the name still this object) or None (leave it). A blocking
 * flock is made with the GIL released, retried on EINTR after the signal handlers ran
 * (as fcntl.flock); another flock error raises OSError. */
static int flock_retry(int fd, int op)
{
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = flock(fd, op);
        Py_END_ALLOW_THREADS
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
        if (PyErr_CheckSignals() < 0)
            return -2;
    }
}

/* The arguments reuse_check and take_check share, (fd, path, dev, ino, buffer,
 * state_offset, state): one segment's descriptor, its name's file, the device and inode
 * that name must still give, and the u32 state word at state_offset of its mapping. */
typedef struct {
    int fd;
    const char *path;
    unsigned long long dev, ino;
    Py_ssize_t off;
    unsigned long state;
} NameCheck;

/* Parses the arguments of *fn* into *c*; 0, or -1 with the exception set. */
static int name_check_args(const char *fn, const char *usage, PyObject *const *args,
                           Py_ssize_t nargs, NameCheck *c)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (!PyBytes_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "%s: path must be bytes", fn);
        return -1;
    }
    if ((c->path = PyBytes_AsString(args[1])) == NULL)
        return -1;
    c->dev = PyLong_AsUnsignedLongLong(args[2]);
    if (c->dev == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    c->ino = PyLong_AsUnsignedLongLong(args[3]);
    if (c->ino == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    c->off = PyLong_AsSsize_t(args[5]);
    if (c->off == -1 && PyErr_Occurred())
        return -1;
    c->state = PyLong_AsUnsignedLong(args[6]);
    if (c->state == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->fd = (int)fd;
    return 0;
}

/* Holds *buffer* (args[4], the segment's mapping) in *view* once the state word of *c*
 * is known to lie inside it; 0, or -1 with the exception set. name_check_state (or the
 * caller) releases the view. */
static int name_check_view(const char *fn, PyObject *buffer, const NameCheck *c,
                           Py_buffer *view)
{
    if (PyObject_GetBuffer(buffer, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (c->off < 0 || c->off > view->len - 4) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: state_offset out of the buffer", fn);
        return -1;
    }
    return 0;
}

/* The state word of *c* in *view*, read once and released. */
static uint32_t name_check_state(Py_buffer *view, const NameCheck *c)
{
    uint32_t state = __atomic_load_n((uint32_t *)((char *)view->buf + c->off), __ATOMIC_ACQUIRE);
    PyBuffer_Release(view);
    return state;
}

/* True when the name's file still gives the device and inode of *c* (section 8). */
static int name_check_same_object(const NameCheck *c)
{
    struct stat st;
    return lstat(c->path, &st) == 0 && (unsigned long long)st.st_dev == c->dev
           && (unsigned long long)st.st_ino == c->ino;
}

/* flock_retry's result as a Python error: 0 when it succeeded, else -1 with the
 * exception set (the signal handlers' own, or the flock error). */
static int flock_retry_or_raise(int fd, int op)
{
    int rc = flock_retry(fd, op);
    if (rc == -1)
        PyErr_SetFromErrno(PyExc_OSError);
    return rc < 0 ? -1 : 0;
}

static PyObject *mod_reuse_check(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    NameCheck c;
    Py_buffer view;
    if (name_check_args("reuse_check", "reuse_check(fd, path, dev, ino, buffer, state_offset, ready)",
                        args, nargs, &c) < 0
            || name_check_view("reuse_check", args[4], &c, &view) < 0)
        return NULL;
    int err;
    do {
        err = flock(c.fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
        /* EINTR, as fcntl.flock: the handlers run, then the same call again */
    } while (err == EINTR && PyErr_CheckSignals() == 0);
    if (err != 0) {
        PyBuffer_Release(&view);
        if (err == EINTR)               /* a signal handler raised */
            return NULL;
        if (err != EWOULDBLOCK) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        /* Another process holds it: the failed conversion dropped this description's
         * shared lock (Linux), which is taken again. */
        if (flock_retry_or_raise(c.fd, LOCK_SH) < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    int alive = name_check_state(&view, &c) == c.state && name_check_same_object(&c);
    if (flock_retry_or_raise(c.fd, LOCK_SH) < 0)
        return NULL;
    if (alive)
        Py_RETURN_TRUE;
    Py_RETURN_NONE;
}

/* take_check(fd, path, dev, ino, buffer, state_offset, retired): steps 1 and 3 of
 * docs/format.md section 8 for an attacher (last_closer.take_shared) when the shared lock
 * is granted at once: flock(fd, LOCK_SH | LOCK_NB), then the re-check: the u32 state at
 * state_offset of buffer (the mapping) is not retired and lstat of path (the name's file)
 * still gives dev and ino. True: held. False: the segment was removed meanwhile (the lock
 * was released again). None: the lock was not granted at once (somebody holds it
 * exclusively for an instant): nothing held, the caller polls (take_shared). Another
 * flock error raises OSError. */
static PyObject *mod_take_check(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    NameCheck c;
    Py_buffer view;
    if (name_check_args("take_check", "take_check(fd, path, dev, ino, buffer, state_offset, retired)",
                        args, nargs, &c) < 0
            || name_check_view("take_check", args[4], &c, &view) < 0)
        return NULL;
    if (flock(c.fd, LOCK_SH | LOCK_NB) != 0) {
        int err = errno;
        PyBuffer_Release(&view);
        if (err == EWOULDBLOCK || err == EINTR)
            Py_RETURN_NONE;
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (name_check_state(&view, &c) != c.state && name_check_same_object(&c))
        Py_RETURN_TRUE;
    if (flock_retry_or_raise(c.fd, LOCK_UN) < 0)
        return NULL;
    Py_RETURN_FALSE;
}

/* leave_try(fd): the first part of section 8 step 2 on fd, which holds the shared flock:
 * flock(fd, LOCK_EX | LOCK_NB). Refused (another process holds the object): the lock is
 * released (LOCK_UN) and True returned. Granted: False, fd keeps the exclusive lock (this
 * process is the last; the caller retires and removes the object, then unlocks). Another
 * error raises OSError (the lock is then in an unknown state: the caller unlocks). */
static PyObject *mod_leave_try(PyObject *mod, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (flock((int)fd, LOCK_EX | LOCK_NB) == 0)
        Py_RETURN_FALSE;
    if (errno != EWOULDBLOCK)
        return PyErr_SetFromErrno(PyExc_OSError);
    int rc = flock_retry((int)fd, LOCK_UN);
    if (rc == -2)
        return NULL;
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

/* populate(buffer): madvise(MADV_POPULATE_WRITE) over the pages of buffer (a mapping
 * made by map_shared, page-aligned), with the GIL released: the page tables of a fresh
 * mapping filled in one call rather than by one fault per page at the first write (a new
 * out-of-line data segment of a queue, docs/format.md section 11.5). The contents are
 * unchanged. Best effort: returns False where the kernel refuses it (before Linux 5.14,
 * not Linux); the pages then fault in as they are written. */
#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23
#endif
static PyObject *mod_populate(PyObject *mod, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    int ok = 0;
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)view.buf;
    if (page > 0 && view.len > 0 && start % (uintptr_t)page == 0) {
        size_t len = ((size_t)view.len + (size_t)page - 1) & ~((size_t)page - 1);
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = madvise(view.buf, len, MADV_POPULATE_WRITE);
        Py_END_ALLOW_THREADS
        ok = rc == 0;
    }
#endif
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

/* ------------------------------------------------------------------ module */

static PyMethodDef module_methods[] = {
    {"locked_attr", make_locked_attr, METH_O,
     "locked_attr(name): a data descriptor for a synchronized wrapper class whose get and set\n"
     "read and write wrapper._obj.<name> under wrapper._sblock."},
    {"spin", (PyCFunction)(void (*)(void))mod_spin, METH_FASTCALL,
     "spin(address, value, budget_ns) -> int\n\nRead the u32 at address, with the GIL released\n"
     "and a CPU pause between reads, until it differs from value (returns the nanoseconds\n"
     "spent) or budget_ns pass (returns -1)."},
    {"futex_wait", (PyCFunction)(void (*)(void))mod_futex_wait, METH_FASTCALL,
     "futex_wait(address, expected, timeout_ns)\n\nFUTEX_WAIT (shared) on the u32 at address,\n"
     "with the GIL released; returns at a wake-up, a changed word, a signal or the timeout."},
    {"futex_wake", mod_futex_wake, METH_O,
     "futex_wake(address)\n\nFUTEX_WAKE (shared) every thread sleeping on the u32 at address."},
    {"chain_resend", chain_resend, METH_O,
     "chain_resend(signum) -> bool\n\nCall right after signal.signal(signum, handler) from the\n"
     "main thread: wrap CPython's C handler so that each delivery also re-sends signum to\n"
     "the main thread every ~50 ms until chain_stop(signum), so that the Python handler\n"
     "runs even if the main thread is blocked in a C call. Called again in a fork child\n"
     "(still wrapped), it makes the child's own timer. False where unsupported (not Linux)\n"
     "or when signum has no handler to chain to."},
    {"set_spin_ns", mod_set_spin_ns, METH_O,
     "set_spin_ns(ns)\n\nThe process-wide spin budget of WaitCore's waits (wake.py sets it)."},
    {"reuse_check", (PyCFunction)(void (*)(void))mod_reuse_check, METH_FASTCALL,
     "reuse_check(fd, path, dev, ino, buffer, state_offset, ready) -> True, False or None\n\n"
     "Checks (2) and (3) of docs/format.md section 11.5 \"Reuse\" on a pooled data segment\n"
     "(queue_data_segments._exclusive_check in one call)."},
    {"take_check", (PyCFunction)(void (*)(void))mod_take_check, METH_FASTCALL,
     "take_check(fd, path, dev, ino, buffer, state_offset, retired) -> True, False or None\n\n"
     "Steps 1 and 3 of docs/format.md section 8 for an attacher when the shared flock is\n"
     "granted at once (last_closer.take_shared's first try; None: not granted, nothing held)."},
    {"leave_try", mod_leave_try, METH_O,
     "leave_try(fd) -> bool\n\nflock(fd, LOCK_EX | LOCK_NB): refused, the lock is released and\n"
     "True returned (others hold the object); granted, False (the caller is the last).\n"
     "(docs/format.md section 8 step 2, queue_data_segments._leave_fd's common case)."},
    {"populate", mod_populate, METH_O,
     "populate(buffer) -> bool\n\nmadvise(MADV_POPULATE_WRITE) over the page-aligned mapping\n"
     "buffer, the GIL released (best effort: False where refused); contents unchanged."},
    {"queue_setup", (PyCFunction)(void (*)(void))mod_queue_setup, METH_FASTCALL,
     "queue_setup(signal, full, empty, decode, hooks, finish_many, deliver)\n\nThe exceptions,\n"
     "the decoder and the hand-over of QueueCore (queue_fast.py calls it once)."},
    {"attach_read", (PyCFunction)(void (*)(void))mod_attach_read, METH_FASTCALL,
     "attach_read(key, poll_len, min_size, copy_len) -> (fd, st_mode, st_uid, st_dev, st_ino,\n"
     "st_size, poll, copy, euid) or None\n\nOpen the segment object key, fstat it and, for a regular\n"
     "file of at least min_size bytes, pread poll_len bytes at 0, then min(size, copy_len)\n"
     "(docs/format.md section 6.2 steps 1 to 4; attach_checks.py applies the rules). None\n"
     "when a call failed (nothing left open)."},
    {"map_shared", (PyCFunction)(void (*)(void))mod_map_shared, METH_FASTCALL,
     "map_shared(fd, length) -> ctypes.c_char array\n\nmmap length bytes of fd read-write,\n"
     "MAP_SHARED, unmapped when the array (and every view of it) is gone (mapping.py)."},
    {"map_sized", (PyCFunction)(void (*)(void))mod_map_sized, METH_FASTCALL,
     "map_sized(fd, length) -> (mapping, size)\n\nmap_shared(fd, length), and the object's size\n"
     "right after it (lseek to its end; -1 if that failed)."},
    {"chain_stop", chain_stop, METH_O,
     "chain_stop(signum)\n\nStop re-sending signum (the Python handler is running)."},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_fastlock",
    "The compiled fast path of sharedbridge's shared lock (optional; see lock_core.py).",
    -1, module_methods,
};

#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL

PyMODINIT_FUNC PyInit__fastlock(void)
{
    INTERN(s_check_kind, "_check_kind");
    INTERN(s_finish_acquire, "_finish_acquire");
    INTERN(s_contended, "_contended");
    INTERN(s_unlock_failed, "_unlock_failed");
    INTERN(s_reacquire, "_reacquire");
    INTERN(s_not_owner, "_not_owner");
    INTERN(s_sblock, "_sblock");
    INTERN(s_obj, "_obj");
    INTERN(s_lock, "_lock");
    INTERN(s_m, "m");
    INTERN(s_kind_word, "kind_word");
    INTERN(s_kind, "kind");
    INTERN(s_enter, "__enter__");
    INTERN(s_exit, "__exit__");
    INTERN(s_corrupt, "_corrupt");
    INTERN(s_record, "_record");
    INTERN(s_take_units, "_take_units");
    INTERN(s_free_gone, "_free_gone");
    INTERN(s_identity, "_identity");
    INTERN(s_notified, "notified");
    INTERN(s_woken, "woken");
    INTERN(s_timed_out, "timed out");
    INTERN(s_read_one, "_read_one");
    INTERN(s_state, "_state");
    INTERN(s_advance_head, "_advance_head");
    INTERN(s_check_recovery, "_check_recovery");
    INTERN(s_tag, "tag");
    INTERN(s_descriptor, "descriptor");
    INTERN(s_data, "data");
    INTERN(s_before_commit, "_before_commit");
    INTERN(s_after_commit, "_after_commit");
    INTERN(s_before_done, "_before_done");
    INTERN(s_from_address, "from_address");
    INTERN(s_sb_unmapper, "_sb_unmapper");
    if (!(g_zero = PyLong_FromLong(0)))
        return NULL;
#ifdef Py_LIMITED_API
    PyObject *types = PyImport_ImportModule("types");
    if (!types)
        return NULL;
    g_method_type = PyObject_GetAttrString(types, "MethodType");
    Py_DECREF(types);
    if (!g_method_type
        || !(LockCoreTypeP = (PyTypeObject *)PyType_FromSpec(&LockCoreType_spec))
        || !(LockedOpTypeP = (PyTypeObject *)PyType_FromSpec(&LockedOpType_spec))
        || !(LockedAttrTypeP = (PyTypeObject *)PyType_FromSpec(&LockedAttrType_spec))
        || !(WaitCoreTypeP = (PyTypeObject *)PyType_FromSpec(&WaitCoreType_spec))
        || !(QueueCoreTypeP = (PyTypeObject *)PyType_FromSpec(&QueueCoreType_spec)))
        return NULL;
#else
    if (PyType_Ready(&LockCoreType) < 0 || PyType_Ready(&LockedOpType) < 0
        || PyType_Ready(&LockedAttrType) < 0 || PyType_Ready(&WaitCoreType) < 0
        || PyType_Ready(&QueueCoreType) < 0)
        return NULL;
#endif
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod)
        return NULL;
    PyObject *getitem = make_locked_op(OP_GETITEM), *setitem = make_locked_op(OP_SETITEM);
    if (PyModule_AddObjectRef(mod, "LockCore", (PyObject *)&LockCoreType) < 0
        || PyModule_AddObjectRef(mod, "WaitCore", (PyObject *)&WaitCoreType) < 0
        || PyModule_AddObjectRef(mod, "QueueCore", (PyObject *)&QueueCoreType) < 0
        || PyModule_AddObjectRef(mod, "locked_getitem", getitem) < 0
        || PyModule_AddObjectRef(mod, "locked_setitem", setitem) < 0
        || PyModule_AddIntConstant(mod, "INTERFACE", INTERFACE) < 0) {
        Py_XDECREF(getitem);
        Py_XDECREF(setitem);
        Py_DECREF(mod);
        return NULL;
    }
    Py_DECREF(getitem);
    Py_DECREF(setitem);
    return mod;
}
