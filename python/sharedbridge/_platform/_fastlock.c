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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <errno.h>
#include <string.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#define INTERFACE 5     /* lock_core.py refuses a module built from another version */

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

static PyTypeObject LockCoreType;

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
    Py_TYPE(self)->tp_free((PyObject *)self);
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
    Py_TYPE(self)->tp_free((PyObject *)self);
}

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
    if (self->registers && w[W_SLEEPERS] > w[W_WAITERS])
        return wc_corrupt(self, "sleepers %lu > waiters %lu", (unsigned long)w[W_SLEEPERS],
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
    if (self->registers && w[W_SLEEPERS] > waiters)
        w[W_SLEEPERS] = waiters;
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
        if (!self->registers || w[W_SLEEPERS])
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
    uint32_t s = self->w[W_SLEEPERS];
    self->w[W_SLEEPERS] = s == 0xFFFFFFFFu ? s : s + 1;
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
        w[W_SLEEPERS] = w[W_SLEEPERS] ? w[W_SLEEPERS] - 1 : 0;
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
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "_wbind(words, lock, registers, slots, max_value, bounded)");
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
    void *addr;
    if (buffer_address(args[0], (Py_ssize_t)(4 * (SYNC_WORDS + 4 * slots)), &addr) < 0)
        return NULL;
    Py_XSETREF(self->w_obj, Py_NewRef(args[0]));
    Py_XSETREF(self->lock, (LockCore *)Py_NewRef(args[1]));
    self->w = addr;
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
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define FASTKW(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef wc_methods[] = {
    {"_wbind", (PyCFunction)(void (*)(void))wc_wbind, METH_FASTCALL,
     "_wbind(words, lock, registers, slots, max_value, bounded): use the ctypes u32 array\n"
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

static PyObject *mod_set_spin_ns(PyObject *mod, PyObject *arg)
{
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred())
        return NULL;
    spin_budget_ns = ns < 0 ? 0 : ns;
    Py_RETURN_NONE;
}

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
    if (!(g_zero = PyLong_FromLong(0)))
        return NULL;
    if (PyType_Ready(&LockCoreType) < 0 || PyType_Ready(&LockedOpType) < 0
        || PyType_Ready(&LockedAttrType) < 0 || PyType_Ready(&WaitCoreType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod)
        return NULL;
    PyObject *getitem = make_locked_op(OP_GETITEM), *setitem = make_locked_op(OP_SETITEM);
    if (PyModule_AddObjectRef(mod, "LockCore", (PyObject *)&LockCoreType) < 0
        || PyModule_AddObjectRef(mod, "WaitCore", (PyObject *)&WaitCoreType) < 0
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
