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
 * except spin() and futex_wait() below, which release it.
 *
 * The deferred wake-up (docs/format.md section 10.3, notify): a LockCore has one pending
 * wake slot (the address of a synchronization segment's seq word and a reference that
 * keeps that mapping alive), set by _defer_wake(address, ref) under the lock and issued
 * (FUTEX_WAKE) right after the outermost pthread_mutex_unlock: release(), _flush_wake()
 * (called by the condition wait's _release_save) and the accessors' unlock.
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
#include <signal.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#define INTERFACE 4     /* lock_core.py refuses a module built from another version */

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

static PyObject *core_acquire(LockCore *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *block = Py_True, *timeout = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (nargs > 0) block = args[0];
    if (nargs > 1) timeout = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "block") == 0 && nargs < 1)
            block = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0 && nargs < 2)
            timeout = args[nargs + i];
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected or repeated keyword "
                         "argument '%U'", key);
            return NULL;
        }
    }
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
    if (PyType_Ready(&LockCoreType) < 0 || PyType_Ready(&LockedOpType) < 0
        || PyType_Ready(&LockedAttrType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod)
        return NULL;
    PyObject *getitem = make_locked_op(OP_GETITEM), *setitem = make_locked_op(OP_SETITEM);
    if (PyModule_AddObjectRef(mod, "LockCore", (PyObject *)&LockCoreType) < 0
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
