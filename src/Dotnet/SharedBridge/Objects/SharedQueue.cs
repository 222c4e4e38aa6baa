// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using SharedBridge.Format;
using SharedBridge.Objects;
using SharedBridge.Platform;
using static SharedBridge.Format.QueueLayout;
using static SharedBridge.Objects.WaitWords;

namespace SharedBridge;

/// <summary>
/// A message queue shared between processes and languages (docs/format.md section 11, kind 8): Python's
/// <c>sharedbridge.Queue</c> / <c>SimpleQueue</c> / <c>JoinableQueue</c>. Messages are records in a ring of bytes
/// guarded by the segment's robust mutex; a write is complete when it returns (no feeder thread). Reads return a
/// <see cref="QueueMessage"/> that points into the ring (zero-copy) until it is disposed. Every message is delivered
/// exactly once, FIFO per producer; a producer killed at any point leaves nothing half-written visible.
/// </summary>
public sealed unsafe partial class SharedQueue : IDisposable, IAsyncDisposable
{
    // The methods every message or batch runs through are [MethodImpl(AggressiveOptimization)]: compiled optimized at
    // their first call instead of running unoptimized (tier 0) until tiered compilation replaces them, which takes 100 ms
    // or more. Measured (loaded 2-core machine, C# -> C#, 3 million 64-byte messages in batches of 64 from a fresh
    // process): about 1.5x the messages/s; DOTNET_TieredCompilation=0 gave the same, DOTNET_TieredPGO=0 changed nothing.
    private const string OwnerName = "SharedQueue";

    private readonly SharedObjectCore _core;
    private readonly RobustMutex _mutex;
    private readonly byte* _c;          // the control words (data area + 0)
    private readonly byte* _ring;       // data area + 256
    private readonly byte* _header;     // the mapping's start (recovery_count, section 7.3)
    private readonly ulong _cap, _mask;
    private readonly uint _maxMessages;
    private readonly WaitWords _r, _w, _j;
    private ulong _seenRecoveries = ulong.MaxValue;     // the recovery_count this object last made the indices consistent for

    private SharedQueue(SharedObjectCore core, uint maxMessages, QueueFlavour flavour)
    {
        _core = core;
        _mutex = core.Mutex!;
        _c = core.Segment.Data;
        _ring = _c + QueueLayout.Ring;
        _header = _c - core.Header.DataOffset;
        _cap = (ulong)core.Header.Length - QueueLayout.Ring;
        _mask = _cap - 1;
        _maxMessages = maxMessages;
        Flavour = flavour;
        _r = new WaitWords(core, R, SleepersWord);
        _w = new WaitWords(core, W, SleepersWord);
        _j = new WaitWords(core, J, SleepersWord);
    }

    // ------------------------------------------------------------------ creation and opening

    /// <summary>Creates a queue segment.</summary>
    /// <param name="name">Segment name (at most 237 bytes: out-of-line messages add 18), or null for a generated name.</param>
    /// <param name="options">Capacity, maximum of ready messages, lifetime, flavour, mode.</param>
    /// <exception cref="SegmentExistsException">The name is taken.</exception>
    public static SharedQueue Create(string? name = null, QueueOptions? options = null)
    {
        if (!Futex.Available)
            throw new PlatformNotSupportedException("A SharedQueue needs Linux on x86_64 or aarch64 (futex).");
        options ??= QueueOptions.Default;
        if (name is not null)
        {
            SegmentName.Validate(name);
            if (Encoding.UTF8.GetByteCount(name) > MaxNameLength)
                throw new ArgumentException(
                    $"The queue name \"{name}\" is longer than {MaxNameLength} bytes: its out-of-line messages are named after it " +
                    "with 18 more characters (docs/format.md section 11.5). Choose a shorter name.", nameof(name));
        }
        ulong capacity = RoundCapacity(options.Capacity);
        if (!Enum.IsDefined(options.Flavour))
            throw new ArgumentException($"Flavour {(uint)options.Flavour} is not a QueueFlavour.", nameof(options));
        uint max = options.MaxMessages <= 0 ? Unbounded : (uint)options.MaxMessages;
        Span<byte> control = stackalloc byte[QueueLayout.Ring];
        control.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(control[QueueLayout.MaxMessages..], max);
        BinaryPrimitives.WriteUInt32LittleEndian(control[QueueLayout.Flavour..], (uint)options.Flavour);
        var segmentOptions = new SegmentOptions
        {
            Mode = options.Mode, Lifetime = options.Lifetime, Synchronized = true, RecursiveLock = false,
            Directory = options.Directory,
        };
        var core = SharedObjectCore.Create(OwnerName, name, SegmentKind.Queue, 'B', 1, (long)(QueueLayout.Ring + capacity), "", [],
            segmentOptions, control);
        var queue = new SharedQueue(core, max, options.Flavour);
        queue._seenRecoveries = queue.RecoveryCount;
        queue.RegisterRemoval();
        return queue;
    }

    private static ulong RoundCapacity(long requested)
    {
        if (requested <= 0 || (ulong)requested > HeaderCodec.MaxQueueCapacity)
            throw new ArgumentOutOfRangeException(nameof(QueueOptions.Capacity), requested,
                $"The capacity is the ring's bytes: from 1 to 2^40 (rounded up to a power of two, at least {HeaderCodec.MinQueueCapacity}).");
        ulong capacity = Math.Max(HeaderCodec.MinQueueCapacity, System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)requested));
        return capacity;
    }

    /// <summary>Opens an existing queue segment (from any language).</summary>
    /// <exception cref="TypeMismatchException">The segment is not a queue.</exception>
    /// <exception cref="CorruptSegmentException">Its immutable words or its ring are invalid.</exception>
    public static SharedQueue Open(string name, OpenOptions? options = null)
    {
        var core = SharedObjectCore.Open(OwnerName, name, options, header => header.Kind == SegmentKind.Queue ? null
            : $"it is a segment of kind {(int)header.Kind} ({header.Kind}), not a queue (kind 8)");
        try
        {
            // The immutable words, read once and kept (section 11.2), checked on that copy.
            Span<byte> words = stackalloc byte[ImmutableWords.BytesFor(SegmentKind.Queue)];
            new ReadOnlySpan<byte>(core.Segment.Data, words.Length).CopyTo(words);
            if (ImmutableWords.Problem(SegmentKind.Queue, words) is { } why) throw CorruptWords(name, why);
            uint max = BinaryPrimitives.ReadUInt32LittleEndian(words[QueueLayout.MaxMessages..]);
            uint flavour = BinaryPrimitives.ReadUInt32LittleEndian(words[QueueLayout.Flavour..]);
            var queue = new SharedQueue(core, max, (QueueFlavour)flavour);
            // The control words are checked now (section 11.2), so that a corrupt queue fails here, not later. Only a
            // recovery of the mutex (recovery_count moving) makes this process repair the ring (section 11.3): a
            // count that breaks the invariants is a corrupt segment, never silently recounted.
            queue._seenRecoveries = queue.RecoveryCount;
            using (queue.LockChecked()) queue.Positions(out _, out _, out _);
            queue.RegisterRemoval();
            return queue;
        }
        catch
        {
            core.Dispose();
            throw;
        }
    }

    // ------------------------------------------------------------------ properties

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _core.Header;

    /// <summary>The ring's bytes (a power of two).</summary>
    public long Capacity => (long)_cap;

    /// <summary>The most ready messages at once; <see cref="int.MaxValue"/> when unbounded.</summary>
    public int MaxMessages => (int)_maxMessages;

    /// <summary>Which Python class attaches it.</summary>
    public QueueFlavour Flavour { get; }

    /// <summary>Ready messages now (Python's <c>qsize()</c>): a snapshot.</summary>
    public int Count
    {
        get
        {
            using var scope = LockChecked();
            return (int)U32(QueueLayout.Count);
        }
    }

    /// <summary>Messages written and not yet acknowledged with <see cref="TaskDone"/>.</summary>
    public long Unfinished
    {
        get
        {
            using var scope = LockChecked();
            return U32(QueueLayout.Unfinished);
        }
    }

    /// <summary>True once <see cref="Complete"/> was called (by any process).</summary>
    public bool IsCompleted
    {
        get
        {
            using var scope = LockChecked();
            return U32(Completed) != 0;
        }
    }

    /// <summary>Messages ever written (modulo 2^64).</summary>
    public ulong TotalWritten
    {
        get
        {
            using var scope = LockChecked();
            return U64(Puts);
        }
    }

    /// <summary>Messages ever read (modulo 2^64).</summary>
    public ulong TotalRead
    {
        get
        {
            using var scope = LockChecked();
            return U64(Gets);
        }
    }

    // ------------------------------------------------------------------ words

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref uint U32(int offset) => ref *(uint*)(_c + offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref ulong U64(int offset) => ref *(ulong*)(_c + offset);

    private ulong RecoveryCount => Volatile.Read(ref *(ulong*)(_header + HeaderLayout.RecoveryCountOffset));

    private CorruptSegmentException Corrupt(string what) => CorruptWords(Name, what);

    private static CorruptSegmentException CorruptWords(string name, string what) => new(
        $"The queue segment \"{name}\" is corrupt: {what} (another process overwrote its words or records): recreate it.");

    internal CorruptDataException CorruptRecord(ulong position, string what) => new(Name, (long)Math.Min(position, long.MaxValue),
        $"The queue \"{Name}\" holds a corrupt record at ring position {position}: {what} (a buggy or hostile peer wrote it): recreate the queue.");

    /// <summary>Takes the mutex and makes the indices consistent when a holder died since this object last looked
    /// (section 11.3, recovery: the recovery count tells, whoever took the lock in between).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private LockScope LockChecked()
    {
        _core.ThrowIfDisposed();
        if (_mutex.OwnerThreadId != 0) SpinWhileHeldReferenced();
        var scope = _core.Lock();
        try { EnsureConsistent(); }
        catch
        {
            scope.Dispose();
            throw;
        }
        return scope;
    }

    /// <summary>A queue holds its mutex for well under a microsecond: a contended locker spins on the lock word for at most
    /// 20 us (and never beyond <see cref="SharedBridgeSettings.SpinBudget"/>; 0 turns it off) before pthread_mutex_lock would
    /// put it to sleep in the kernel (a futex wait and wake, tens of microseconds on a busy machine). Measured (loaded
    /// machine, 64-byte messages between two processes): about twice the messages per second. The lock is still only taken
    /// with pthread_mutex_lock.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SpinWhileHeldReferenced()
    {
        // The lock word is read outside the mutex's own Lock: hold a reference on the mapping so that a Dispose on
        // another thread cannot unmap it under the spin (it throws ObjectDisposedException here instead).
        MappedSegment segment = _core.Segment;
        segment.AddRef();
        try { SpinWhileHeld(); }
        finally { segment.Release(); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SpinWhileHeld()
    {
        long budget = Math.Min(SharedBridgeSettings.SpinStopwatchTicks, LockSpinTicks);
        if (budget == 0) return;
        long end = Stopwatch.GetTimestamp() + budget;
        for (int i = 1; _mutex.OwnerThreadId != 0; i++)
        {
            Futex.Pause();
            if ((i & 15) == 0 && Stopwatch.GetTimestamp() >= end) return;
        }
    }

    private static readonly long LockSpinTicks = Stopwatch.Frequency / 50_000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnsureConsistent()
    {
        if (RecoveryCount != _seenRecoveries) Recover();
    }

    /// <summary>The positions, checked against the invariants of section 11.2 (mutex held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Positions(out ulong head, out ulong read, out ulong tail)
    {
        head = U64(Head);
        read = U64(QueueLayout.Read);
        tail = U64(Tail);
        if (head > read || read > tail || tail - head > _cap || ((head | read | tail) & 7) != 0 || U32(Completed) > 1
            || U32(QueueLayout.Count) > _maxMessages || U32(QueueLayout.Count) > (tail - read) / RecordHeader)
            ThrowCorruptPositions();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowCorruptPositions() => throw Corrupt(
        $"head {U64(Head)}, read {U64(QueueLayout.Read)}, tail {U64(Tail)}, count {U32(QueueLayout.Count)}, completed {U32(Completed)} " +
        $"break the invariants (head <= read <= tail, tail - head <= {_cap}, multiples of 8, count <= {_maxMessages} and <= (tail - read) / 32)");

    // ------------------------------------------------------------------ records (section 11.3)

    /// <summary>The size of the record at <paramref name="p"/>, checked: a multiple of 8, at least 8, inside the ring
    /// and not past <paramref name="limit"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint SizeAt(ulong p, ulong limit, out byte* rec)
    {
        ulong o = p & _mask;
        rec = _ring + o;
        uint size = *(uint*)rec;
        if (size < PadMinimum || (size & 7) != 0 || o + size > _cap || size > limit - p) ThrowBadSize(p, size, limit);
        return size;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadSize(ulong p, uint size, ulong limit) => throw CorruptRecord(p,
        $"size {size} is not a multiple of 8 of at least 8 ending inside the ring (offset {p & _mask} of {_cap}) before position {limit}");

    /// <summary>A message record's fields, validated against section 11.3 (bounds, tag, flags, sizes).</summary>
    private readonly struct Record
    {
        internal readonly byte* Rec;
        internal readonly uint Size;
        internal readonly byte Tag, Flags;
        internal readonly uint DescLength;
        internal readonly ulong DataLength;
        internal readonly uint DataPart;     // inline: align8(data_length); out of line: align8(16 + name_length)

        internal Record(byte* rec, uint size, byte tag, byte flags, uint descLength, ulong dataLength, uint dataPart)
        {
            Rec = rec;
            Size = size;
            Tag = tag;
            Flags = flags;
            DescLength = descLength;
            DataLength = dataLength;
            DataPart = dataPart;
        }

        internal bool OutOfLine => (Flags & FlagOutOfLine) != 0;
        internal byte* Descriptor => Rec + RecordHeader;
        internal byte* DataStart => Rec + RecordHeader + Align8(DescLength);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Record MessageAt(ulong p, byte* rec, uint size)
    {
        if (size < RecordHeader) throw CorruptRecord(p, $"a message record of {size} bytes (at least 32)");
        byte tag = rec[RecTag], flags = rec[RecFlags];
        if (tag is < MinTag or > MaxTag) throw CorruptRecord(p, $"unknown message tag {tag}");
        if ((flags & ~FlagOutOfLine) != 0 || rec[RecReserved] != 0) throw CorruptRecord(p, $"flags 0x{flags:X2} / reserved byte {rec[RecReserved]}");
        uint desc = *(uint*)(rec + RecDescLength);
        ulong data = *(ulong*)(rec + RecDataLength);
        ulong room = size - RecordHeader;
        if (desc > room || Align8(desc) > room) throw CorruptRecord(p, $"desc_length {desc} exceeds the record ({size} bytes)");
        ulong rest = room - Align8(desc);
        ulong part;
        if ((flags & FlagOutOfLine) != 0)
        {
            if (rest < ReferenceHeader) throw CorruptRecord(p, "an out-of-line record too short for its reference");
            uint nameLength = *(uint*)(rec + RecordHeader + Align8(desc) + 12);
            part = Align8(ReferenceHeader + (ulong)nameLength);
            if (nameLength is 0 or > 255) throw CorruptRecord(p, $"an out-of-line reference with name_length {nameLength}");
        }
        else
        {
            if (data > rest) throw CorruptRecord(p, $"data_length {data} exceeds the record ({size} bytes, descriptor {desc})");
            part = Align8(data);
        }
        if (part != rest) throw CorruptRecord(p, $"size {size} is not 32 + align8(desc_length {desc}) + {part} (section 11.3)");
        return new Record(rec, size, tag, flags, desc, data, (uint)part);
    }

    // ------------------------------------------------------------------ recovery and the head

    /// <summary>Section 11.3, recovery (mutex held): validates every record from read to tail, recounts the ready
    /// ones, unfinished = max(unfinished, count), advances the head.</summary>
    private void Recover()
    {
        ulong head = U64(Head), read = U64(QueueLayout.Read), tail = U64(Tail);
        if (head > read || read > tail || tail - head > _cap || ((head | read | tail) & 7) != 0 || U32(Completed) > 1)
            ThrowCorruptPositions();
        uint count = 0;
        ulong p = read;
        while (p < tail)
        {
            uint size = SizeAt(p, tail, out byte* rec);
            byte state = rec[RecState];
            switch (state)
            {
                case StatePad: break;
                case StateReady:
                    MessageAt(p, rec, size);
                    count++;
                    break;
                case StateDone:
                case StateTaken when p == read:     // a taker (or getter) died between its stores: that message is over
                    if (p == read) U64(QueueLayout.Read) = read = p + size;
                    break;
                default: throw CorruptRecord(p, $"state {state} after the read position (1 ready, 3 done or 4 pad expected)");
            }
            p += size;
        }
        if (count > _maxMessages) throw Corrupt($"{count} ready messages, more than max_messages {_maxMessages}");
        U32(QueueLayout.Count) = count;
        if (U32(QueueLayout.Unfinished) < count) U32(QueueLayout.Unfinished) = count;
        AdvanceHead(reclaim: false);
        _seenRecoveries = RecoveryCount;
    }

    /// <summary>Section 11.3, advance head (mutex held): steps over records that no longer hold bytes; with
    /// <paramref name="reclaim"/>, also over taken records whose taker is gone (their message is lost). True when
    /// the head moved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool AdvanceHead(bool reclaim)
    {
        ulong head = U64(Head), read = U64(QueueLayout.Read);
        ulong start = head;
        while (head < read)
        {
            uint size = SizeAt(head, read, out byte* rec);
            if (rec[RecState] == StateTaken)
            {
                if (!reclaim || size < RecordHeader) break;
                uint pid = *(uint*)(rec + RecTakerPid);
                ulong started = *(ulong*)(rec + RecTakerStart);
                if (pid is not 0 and <= int.MaxValue && CreatorIdentity.IsRunning((int)pid, started)) break;
                var message = MessageAt(head, rec, size);
                if (message.OutOfLine) OutOfLine.LoseReferenced(this, head, message);
                rec[RecState] = StateDone;
            }
            head += size;
        }
        if (head == start) return false;
        U64(Head) = head;
        return true;
    }

    /// <summary>Reclaims the ring space of dead takers (a putter's step before it waits and once per slice).</summary>
    private bool ReclaimDeadTakers() => AdvanceHead(reclaim: true);

    // ------------------------------------------------------------------ put (section 11.3)

    private enum PutResult { Done, Full, Completed }

    /// <summary>Tests only (set by reflection in the test child): called with the mutex held after the record's bytes are
    /// written and before tail is stored, and after tail is stored before the counters, so that a test can kill a
    /// producer there (section 11.3, recovery).</summary>
    private static Action<string>? BeforeCommitHook = null, AfterCommitHook = null;

    /// <summary>One put attempt, mutex held: the record is written beyond tail, then tail is stored (the commit).
    /// <paramref name="data"/> is the record's data part (the message, or the out-of-line reference when
    /// <paramref name="outOfLineSegment"/> is given); <paramref name="text"/>, when not null, is encoded into it instead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private PutResult TryPutLocked(in MessageSpec spec, ReadOnlySpan<byte> data, string? text, OutOfLine? outOfLineSegment)
    {
        bool outOfLine = outOfLineSegment is not null;
        Positions(out ulong head, out _, out ulong tail);
        if (U32(Completed) != 0) return PutResult.Completed;
        uint count = U32(QueueLayout.Count);
        if (count >= _maxMessages) return PutResult.Full;
        ulong descPart = Align8((ulong)spec.DescriptorLength);
        ulong dataBytes = outOfLine ? (ulong)data.Length : spec.DataLength;
        ulong n = RecordHeader + descPart + Align8(dataBytes);
        ulong o = tail & _mask;
        ulong pad = o + n > _cap ? _cap - o : 0;
        if (_cap - (tail - head) < n + pad) return PutResult.Full;
        byte* rec = _ring + o;
        if (pad != 0)
        {
            *(ulong*)rec = pad | (ulong)StatePad << 32;     // size, state 4, tag 0, flags 0, reserved 0
            rec = _ring;
        }
        WriteRecordHeader(rec, n, (byte)spec.Type, outOfLine ? FlagOutOfLine : (byte)0, (uint)spec.DescriptorLength, spec.DataLength);
        byte* p = rec + RecordHeader;
        if (descPart != 0)
        {
            *(ulong*)(p + descPart - 8) = 0;
            spec.WriteDescriptor(new Span<byte>(p, spec.DescriptorLength));
            p += descPart;
        }
        if (dataBytes != 0)
        {
            *(ulong*)(p + Align8(dataBytes) - 8) = 0;
            if (text is not null) MessageSpec.StrictUtf8.GetBytes(text, new Span<byte>(p, (int)dataBytes));
            else data.CopyTo(new Span<byte>(p, (int)dataBytes));
        }
        BeforeCommitHook?.Invoke(Name);
        // The record's end: a reusable data segment is reused only once head has passed it (section 11.5, Reuse).
        outOfLineSegment?.Committing(tail + pad, tail + pad + n);
        Volatile.Write(ref U64(Tail), tail + pad + n);     // the commit
        AfterCommitHook?.Invoke(Name);
        U32(QueueLayout.Count) = count + 1;
        U32(QueueLayout.Unfinished) = U32(QueueLayout.Unfinished) is var u && u == uint.MaxValue ? u : u + 1;
        U64(Puts) = unchecked(U64(Puts) + 1);
        _r.Notify(1);
        return PutResult.Done;
    }

    /// <summary>A ready record's 32-byte header (section 11.3) in four 8-byte stores: size, state 1, tag, flags, reserved 0;
    /// desc_length, taker_pid 0; taker_start_time 0; data_length (little-endian, as every platform with futexes here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteRecordHeader(byte* rec, ulong size, byte tag, byte flags, uint descLength, ulong dataLength)
    {
        *(ulong*)rec = (uint)size | (ulong)StateReady << 32 | (ulong)tag << 40 | (ulong)flags << 48;
        *(ulong*)(rec + RecDescLength) = descLength;
        *(ulong*)(rec + RecTakerStart) = 0;
        *(ulong*)(rec + RecDataLength) = dataLength;
    }

    /// <summary>The records larger than this go out of line (section 11.5: min(capacity / 4, 2^31), both libraries).</summary>
    private ulong InlineLimit => QueueLayout.InlineLimit(_cap);

    private bool NeedsOutOfLine(in MessageSpec spec) =>
        RecordHeader + Align8((ulong)spec.DescriptorLength) + Align8(spec.DataLength) > InlineLimit;

    /// <summary>A blocking put: the fast attempt, then reclaim and wait on W in slices (section 10.3) until room,
    /// the timeout (QueueTimeoutException) or the cancellation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool Put(in MessageSpec spec, ReadOnlySpan<byte> data, string? text, TimeSpan timeout, CancellationToken cancellationToken,
        bool block)
    {
        CheckTimeout(timeout);
        _core.ThrowIfDisposed();
        OutOfLine? outOfLine = null;
        if (NeedsOutOfLine(spec))
        {
            outOfLine = OutOfLine.Create(this, spec, data, text);
            data = outOfLine.Reference;
            text = null;
        }
        bool done = false;
        try
        {
            done = PutLocked(spec, data, text, outOfLine, timeout, cancellationToken, block);
        }
        finally
        {
            outOfLine?.Finish(committed: done);
        }
        if (!done && block) throw TimeoutError(timeout, "full");
        return done;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool PutLocked(in MessageSpec spec, ReadOnlySpan<byte> data, string? text, OutOfLine? outOfLine, TimeSpan timeout,
        CancellationToken cancellationToken, bool block)
    {
        long start = Stopwatch.GetTimestamp();
        using var scope = LockChecked();
        var result = TryPutLocked(spec, data, text, outOfLine);
        if (result == PutResult.Full && ReclaimDeadTakers()) result = TryPutLocked(spec, data, text, outOfLine);
        if (result == PutResult.Done) return true;
        if (result == PutResult.Completed) throw CompletedError("written to");
        if (!block || Left(timeout, start) == TimeSpan.Zero) return false;
        _w.Join();
        try
        {
            while (true)
            {
                var left = Left(timeout, start);
                if (left == TimeSpan.Zero) return false;
                _w.WaitOnce(SliceOf(left), cancellationToken);
                EnsureConsistent();
                ReclaimDeadTakers();
                result = TryPutLocked(spec, data, text, outOfLine);
                if (result == PutResult.Done) return true;
                if (result == PutResult.Completed) throw CompletedError("written to");
            }
        }
        finally
        {
            _w.LeaveIfHeld();
        }
    }

    private QueueCompletedException CompletedError(string what) => new(Name,
        $"The queue \"{Name}\" was completed (no more messages){(what == "read from" ? " and every message has been read" : "")}: " +
        $"it cannot be {what}. Create a new queue for more messages.");

    private QueueTimeoutException TimeoutError(TimeSpan timeout, string state) => new(Name,
        $"The queue \"{Name}\" stayed {state} for {timeout.TotalMilliseconds:0.###} ms: nothing was " +
        $"{(state == "full" ? "written" : state == "empty" ? "read" : "changed")}. Retry, or increase the timeout" +
        (state == "full" ? " or the capacity (or read faster)." : "."));

    // ------------------------------------------------------------------ writes: bytes [1], string [2], T [3/4], span + shape [5]

    /// <summary>Writes <paramref name="data"/> as a bytes message if there is room now; false when the queue is full.</summary>
    /// <exception cref="QueueCompletedException">The queue was completed.</exception>
    public bool TryWrite(ReadOnlySpan<byte> data)
    {
        return TryPut(MessageSpec.Bytes(data.Length), data, null);
    }

    /// <summary>Writes a bytes message, waiting up to <paramref name="timeout"/> (null: for ever) for room.</summary>
    /// <exception cref="QueueTimeoutException">Still full after the timeout (nothing written).</exception>
    /// <exception cref="QueueCompletedException">The queue was completed.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (nothing written; the queue stays consistent).</exception>
    public void Write(ReadOnlySpan<byte> data, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Put(MessageSpec.Bytes(data.Length), data, null, timeout ?? Timeout.InfiniteTimeSpan, cancellationToken, block: true);

    /// <summary>Writes a UTF-8 string message if there is room now; false when the queue is full.</summary>
    public bool TryWrite(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryPut(MessageSpec.String(text), default, text);
    }

    /// <summary>Writes a UTF-8 string message, waiting up to <paramref name="timeout"/> (null: for ever) for room.</summary>
    public void Write(string text, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(text);
        Put(MessageSpec.String(text), default, text, timeout ?? Timeout.InfiniteTimeSpan, cancellationToken, block: true);
    }

    /// <summary>Writes one value if there is room now: a scalar message (tag 3) for the primitive types of docs/format.md
    /// section 3.4, a record message (tag 4) for a struct (described by its field table).</summary>
    public bool TryWrite<T>(T value) where T : unmanaged =>
        TryPut(ValueSpec<T>(), MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)), null);

    /// <summary>Writes one value (tag 3 or 4), waiting up to <paramref name="timeout"/> (null: for ever) for room.</summary>
    public void Write<T>(T value, TimeSpan? timeout = null, CancellationToken cancellationToken = default) where T : unmanaged =>
        Put(ValueSpec<T>(), MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)), null, timeout ?? Timeout.InfiniteTimeSpan,
            cancellationToken, block: true);

    /// <summary>Writes an n-dimensional array message (tag 5): <paramref name="values"/> in C order, of shape
    /// <paramref name="shape"/> (its product must be the span's length; an empty shape is a 0-d array of one value).</summary>
    /// <exception cref="ArgumentException">The shape does not match the values.</exception>
    public bool TryWrite<T>(ReadOnlySpan<T> values, ReadOnlySpan<long> shape) where T : unmanaged =>
        TryPut(ArraySpecOf<T>(values.Length, shape), MemoryMarshal.AsBytes(values), null);

    /// <summary>Writes an n-dimensional array message (tag 5), waiting up to <paramref name="timeout"/> (null: for ever).</summary>
    public void Write<T>(ReadOnlySpan<T> values, ReadOnlySpan<long> shape, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default) where T : unmanaged =>
        Put(ArraySpecOf<T>(values.Length, shape), MemoryMarshal.AsBytes(values), null, timeout ?? Timeout.InfiniteTimeSpan,
            cancellationToken, block: true);

    private bool TryPut(in MessageSpec spec, ReadOnlySpan<byte> data, string? text) =>
        Put(spec, data, text, TimeSpan.Zero, default, block: false);

    private static MessageSpec ValueSpec<T>() where T : unmanaged => MessageSpec.Value<T>();

    internal static MessageSpec ArraySpecOf<T>(int length, ReadOnlySpan<long> shape) where T : unmanaged =>
        MessageSpec.Array<T>(shape, length);

    // ------------------------------------------------------------------ get / take (section 11.3)

    /// <summary>Skips pads and done records at read; false when no message is ready (mutex held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool LocateReady(out ulong position, out Record record)
    {
        Positions(out _, out ulong read, out ulong tail);
        while (read < tail)
        {
            uint size = SizeAt(read, tail, out byte* rec);
            byte state = rec[RecState];
            if (state == StateReady)
            {
                position = read;
                record = MessageAt(read, rec, size);
                return true;
            }
            // docs/format.md section 11.3 get step 1: pads, done records and a taken one (its taker died between its
            // stores of step 4) are passed over.
            if (state is not (StatePad or StateDone or StateTaken)) throw CorruptRecord(read, $"state {state} at the read position (1 to 4 expected)");
            read += size;
            U64(QueueLayout.Read) = read;
        }
        if (U32(QueueLayout.Count) != 0) throw Corrupt($"count {U32(QueueLayout.Count)} with no ready record");
        position = 0;
        record = default;
        return false;
    }

    /// <summary>The bookkeeping of a get or take once its record is handed out (mutex held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Consumed(ulong position, in Record record, byte state)
    {
        if (state == StateTaken)
        {
            *(uint*)(record.Rec + RecTakerPid) = (uint)ProcessInfo.Pid;
            *(ulong*)(record.Rec + RecTakerStart) = ProcessInfo.StartTime;
        }
        record.Rec[RecState] = state;
        U64(QueueLayout.Read) = position + record.Size;
        uint count = U32(QueueLayout.Count);
        if (count == 0) throw Corrupt("a ready record while count is 0");
        U32(QueueLayout.Count) = count - 1;
        U64(Gets) = unchecked(U64(Gets) + 1);
        if (state == StateDone && AdvanceHead(reclaim: false)) _w.Notify(ValueMax);
    }

    /// <summary>One take attempt (mutex held): a ready message becomes a <see cref="QueueMessage"/> (state 2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private QueueMessage? TryTakeLocked()
    {
        if (!LocateReady(out ulong position, out var record)) return null;
        MessageDescriptor descriptor;
        try
        {
            descriptor = MessageCodec.Read(record.Tag, new ReadOnlySpan<byte>(record.Descriptor, (int)record.DescLength), record.DataLength, Name);
        }
        catch (CorruptDataException)
        {
            // Section 11.4: a message whose descriptor is corrupt is consumed and reported, so that one bad message never
            // wedges the queue (the next read goes on with the next message).
            Consumed(position, record, StateDone);
            throw;
        }
        if (record.OutOfLine)
        {
            HeldData segment;
            try
            {
                segment = OutOfLine.Map(this, position, record);
            }
            catch
            {
                Consumed(position, record, StateDone);      // lost: the queue goes on with the next message
                throw;
            }
            Consumed(position, record, StateTaken);
            return new QueueMessage(this, position, descriptor, segment);
        }
        Consumed(position, record, StateTaken);
        return new QueueMessage(this, position, descriptor, record.DataStart, (long)record.DataLength);
    }

    /// <summary>A message keeps the queue's mapping (its ring) until it is disposed, even after the queue is.</summary>
    internal void HoldMapping() => _core.Segment.AddRef();

    internal void ReleaseMapping() => _core.Segment.Release();

    /// <summary>Section 11.3 release (the message's Dispose): state 3, advance head, wake putters if it moved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void ReleaseTaken(ulong position)
    {
        _mutex.Lock();
        try
        {
            EnsureConsistent();
            ulong head = U64(Head), read = U64(QueueLayout.Read);
            if (position < head || position >= read) return;    // reclaimed (never for a live taker) or a peer moved the indices
            byte* rec = _ring + (position & _mask);
            if (rec[RecState] != StateTaken || *(uint*)(rec + RecTakerPid) != (uint)ProcessInfo.Pid) return;
            rec[RecState] = StateDone;
            if (AdvanceHead(reclaim: false) && !_core.IsDisposed) _w.Notify(ValueMax);
        }
        finally
        {
            _mutex.Unlock();
        }
    }

    /// <summary>Takes the next message if one is ready: <paramref name="message"/> points into the ring until disposed.
    /// False when the queue is empty.</summary>
    /// <exception cref="QueueCompletedException">The queue was completed and every message has been read.</exception>
    /// <exception cref="CorruptDataException">The next record is corrupt.</exception>
    public bool TryRead([NotNullWhen(true)] out QueueMessage? message)
    {
        using var scope = LockChecked();
        message = TryTakeLocked();
        if (message is not null) return true;
        if (U32(Completed) != 0) throw CompletedError("read from");
        return false;
    }

    /// <summary>Takes the next message, waiting up to <paramref name="timeout"/> (null: for ever).</summary>
    /// <exception cref="QueueTimeoutException">Still empty after the timeout.</exception>
    /// <exception cref="QueueCompletedException">The queue was completed and every message has been read.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (nothing taken; the queue stays consistent).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public QueueMessage Read(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        TimeSpan wait = timeout ?? Timeout.InfiniteTimeSpan;
        CheckTimeout(wait);
        long start = Stopwatch.GetTimestamp();
        using var scope = LockChecked();
        var message = TryTakeLocked();
        if (message is not null) return message;
        if (U32(Completed) != 0) throw CompletedError("read from");
        if (Left(wait, start) == TimeSpan.Zero) throw TimeoutError(wait, "empty");
        _r.Join();
        try
        {
            while (true)
            {
                var left = Left(wait, start);
                if (left == TimeSpan.Zero) throw TimeoutError(wait, "empty");
                _r.WaitOnce(SliceOf(left), cancellationToken);
                EnsureConsistent();
                message = TryTakeLocked();
                if (message is not null) return message;
                if (U32(Completed) != 0) throw CompletedError("read from");
            }
        }
        finally
        {
            _r.LeaveIfHeld();
        }
    }

    /// <summary>Copies the next message's data into <paramref name="destination"/> if one is ready (section 11.3 get: no
    /// allocation, the record is done at once). Bytes and string messages only.</summary>
    /// <returns>False when the queue is empty.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is too short (the message stays in the queue).</exception>
    /// <exception cref="TypeMismatchException">The next message is not bytes or a string (it stays in the queue).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryRead(Span<byte> destination, out int bytesWritten)
    {
        using var scope = LockChecked();
        if (TryCopyLocked(destination, out bytesWritten)) return true;
        if (U32(Completed) != 0) throw CompletedError("read from");
        return false;
    }

    /// <summary>Section 11.3 get of the next message, a bytes or string one, into <paramref name="destination"/> (mutex
    /// held); false when none is ready.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool TryCopyLocked(Span<byte> destination, out int bytesWritten)
    {
        if (!LocateReady(out ulong position, out var record))
        {
            bytesWritten = 0;
            return false;
        }
        if (record.Tag is not ((byte)QueueMessageType.Bytes or (byte)QueueMessageType.String) || record.DescLength != 0)
            throw new TypeMismatchException(
                $"The next message of queue \"{Name}\" is of type {(QueueMessageType)record.Tag}, not bytes or a string: read it with TryRead(out QueueMessage).");
        if (record.DataLength > (ulong)destination.Length)
            throw new ArgumentException(
                $"The next message of queue \"{Name}\" has {record.DataLength} bytes; the destination holds {destination.Length}. It stays in the queue.",
                nameof(destination));
        int length = (int)record.DataLength;
        if (record.OutOfLine)
        {
            HeldData segment;
            try { segment = OutOfLine.Map(this, position, record); }
            catch
            {
                Consumed(position, record, StateDone);
                throw;
            }
            try { new ReadOnlySpan<byte>(segment.Data, length).CopyTo(destination); }
            finally { segment.Dispose(); }
        }
        else
        {
            new ReadOnlySpan<byte>(record.DataStart, length).CopyTo(destination);
        }
        if (record.Tag == (byte)QueueMessageType.String && !System.Text.Unicode.Utf8.IsValid(destination[..length]))
        {
            Consumed(position, record, StateDone);
            throw CorruptRecord(position, "a string message that is not valid UTF-8");
        }
        Consumed(position, record, StateDone);
        bytesWritten = length;
        return true;
    }

    // ------------------------------------------------------------------ completion and joining

    /// <summary>No more messages (for every process): writes fail with <see cref="QueueCompletedException"/>; readers drain
    /// the ready messages, then get that exception (ReadAllAsync ends, a channel reader sees completion).</summary>
    public void Complete() => TryComplete();

    /// <summary>Acknowledges one message read (Python's <c>task_done()</c>): <see cref="Join"/> returns once every written
    /// message was acknowledged.</summary>
    /// <exception cref="InvalidOperationException">Called more times than messages were written.</exception>
    public void TaskDone()
    {
        using var scope = LockChecked();
        uint unfinished = U32(QueueLayout.Unfinished);
        if (unfinished == 0)
            throw new InvalidOperationException(
                $"TaskDone() on queue \"{Name}\" was called more times than messages were written (Python: \"task_done() called too many times\").");
        U32(QueueLayout.Unfinished) = unfinished - 1;
        if (unfinished == 1) _j.Notify(ValueMax);
    }

    /// <summary>Waits until every message written was acknowledged with <see cref="TaskDone"/> (Python's <c>join()</c>), up
    /// to <paramref name="timeout"/> (null: for ever).</summary>
    /// <exception cref="QueueTimeoutException">Messages were still unfinished after the timeout.</exception>
    public void Join(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        TimeSpan wait = timeout ?? Timeout.InfiniteTimeSpan;
        CheckTimeout(wait);
        long start = Stopwatch.GetTimestamp();
        using var scope = LockChecked();
        if (U32(QueueLayout.Unfinished) == 0) return;
        if (Left(wait, start) == TimeSpan.Zero) throw TimeoutError(wait, "unfinished");
        _j.Join();
        try
        {
            while (true)
            {
                var left = Left(wait, start);
                if (left == TimeSpan.Zero) throw TimeoutError(wait, "unfinished");
                _j.WaitOnce(SliceOf(left), cancellationToken);
                EnsureConsistent();
                if (U32(QueueLayout.Unfinished) == 0) return;
            }
        }
        finally
        {
            _j.LeaveIfHeld();
        }
    }

    // ------------------------------------------------------------------ lifetime

    /// <summary>Removes the name now (and the out-of-line segments of messages still in it); the memory stays mapped.</summary>
    public void Unlink() => _core.Unlink();

    /// <summary>Closes the queue; the creator (or the last closer) also removes the name and the out-of-line segments of
    /// messages still in it (docs/format.md section 11.5), and this object leaves the reusable data segments it kept as a
    /// producer and unmaps the ones it kept mapped as a consumer. Messages still held stay valid until disposed.</summary>
    public void Dispose()
    {
        // First, while the ring is mapped: a kept segment that a record may still reference keeps its name (section 11.5).
        if (!_core.IsDisposed) LeaveReusePool();
        // The data segments kept mapped as a consumer hold no lock between messages: closing them removes nothing.
        _dataCache.Release();
        _core.Dispose();
    }

    /// <summary>As <see cref="Dispose"/>.</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Whoever removes the queue's name also unlinks the out-of-line segments of the ready records.</summary>
    private void RegisterRemoval() => _core.Segment.BeforeRemove = RemoveOutOfLine;

    private void RemoveOutOfLine()
    {
        if (!_mutex.TryLock(TimeSpan.FromMilliseconds(500), out _)) return;     // held for long by another: those segments stay (reapable)
        try
        {
            ulong read = U64(QueueLayout.Read), tail = U64(Tail);
            if (read > tail || tail - read > _cap) return;
            for (ulong p = read; p < tail;)
            {
                uint size = SizeAt(p, tail, out byte* rec);
                if (rec[RecState] == StateReady && size >= RecordHeader && (rec[RecFlags] & FlagOutOfLine) != 0)
                    OutOfLine.UnlinkReferenced(this, p, MessageAt(p, rec, size));
                p += size;
            }
        }
        catch (CorruptSegmentException)
        {
            // A corrupt ring: its out-of-line segments are left to `sharedbridge reap`.
        }
        finally
        {
            _mutex.Unlock();
        }
    }
}
