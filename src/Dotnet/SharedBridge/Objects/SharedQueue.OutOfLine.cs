using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using SharedBridge.Format;
using SharedBridge.Objects;
using SharedBridge.Platform;
using static SharedBridge.Format.QueueLayout;

namespace SharedBridge;

public sealed unsafe partial class SharedQueue
{
    /// <summary>How many reusable data segments one SharedQueue object keeps for later out-of-line messages (docs/format.md
    /// section 11.5, Reuse: the producer's choice), and how many bytes of them at most (the newest is always kept). A
    /// producer that runs ahead of its consumer has about as many segments in flight as messages, and each one it cannot
    /// reuse costs fresh tmpfs pages (about 1 us per 4 KiB here): with 4, a stream of 1 MiB messages made a new segment
    /// for one message in ten. The byte bound keeps a stream of huge messages from pinning more memory than that.</summary>
    internal const int ReusePoolSize = 16;
    internal const long ReusePoolBytes = 128L * 1024 * 1024;

    // The reusable data segments this object made and holds, not in use by a put (guarded by _reuseGate); null once disposed.
    private List<OutOfLine>? _reusePool = [];
    private readonly object _reuseGate = new();

    /// <summary>True when this producer may make reusable data segments: a queue of compat_version 6 or more (section 6.3;
    /// the consumers of a version-5 queue may be of version 5, which remove a data segment's name at once).</summary>
    private bool MakesReusableSegments => _core.Header.CompatVersion >= HeaderLayout.QueueVersion;

    /// <summary>Reuse condition 1 (section 11.5): head has passed <paramref name="end"/>. An unlocked read: head only grows,
    /// so a stale value only delays a reuse. False when the queue's mapping is gone.</summary>
    private bool HeadPassed(ulong end)
    {
        if (end == 0) return true;
        var segment = _core.Segment;
        if (!segment.TryAddRef()) return false;
        try { return Volatile.Read(ref U64(Head)) >= end; }
        finally { segment.Release(); }
    }

    /// <summary>Whether the record at <paramref name="position"/> (ending at <paramref name="end"/>) may still be ready: then
    /// its consumer has not joined its data segment yet, and the producer leaving it must not remove the name. Unlocked
    /// reads: head only grows, and while it has not passed the record the record's bytes are its own; a stale value only
    /// keeps a name (for the reaper). True when the queue's mapping is gone (nothing can be read).</summary>
    private bool MayStillBeReady(ulong position, ulong end)
    {
        if (end == 0) return false;
        var segment = _core.Segment;
        if (!segment.TryAddRef()) return true;
        try
        {
            if (Volatile.Read(ref U64(Head)) >= end) return false;
            return Volatile.Read(ref _ring[(position & _mask) + RecState]) == StateReady;
        }
        finally { segment.Release(); }
    }

    /// <summary>A pooled segment of <paramref name="length"/> bytes that may be reused now (section 11.5, Reuse, conditions 1
    /// to 3 in that order), taken out of the pool; null when none. Segments that failed condition 3 (their name was
    /// removed) are left.</summary>
    private OutOfLine? TakeReusable(long length)
    {
        List<OutOfLine> dead = [];
        try
        {
            lock (_reuseGate)
            {
                var pool = _reusePool;
                if (pool is null) return null;
                for (int i = 0; i < pool.Count; i++)
                {
                    var entry = pool[i];
                    if (entry.Length != length || !HeadPassed(entry.LastEnd)) continue;
                    switch (entry.TryClaim())
                    {
                        case OutOfLine.Claim.Busy: continue;
                        case OutOfLine.Claim.Dead:
                            pool.RemoveAt(i--);
                            dead.Add(entry);
                            continue;
                        default:
                            pool.RemoveAt(i);
                            return entry;
                    }
                }
                return null;
            }
        }
        finally
        {
            foreach (var entry in dead) entry.Leave();
        }
    }

    /// <summary>Keeps a reusable segment after a put (committed or not); the oldest one is left when the pool is full, and
    /// every one once the queue object is disposed.</summary>
    private void ReturnReusable(OutOfLine entry)
    {
        List<OutOfLine>? evicted = null;
        lock (_reuseGate)
        {
            if (_reusePool is { } pool)
            {
                pool.Add(entry);
                long bytes = 0;
                foreach (var e in pool) bytes += e.Length;
                int n = 0;
                while (pool.Count - n > 1 && (pool.Count - n > ReusePoolSize || bytes > ReusePoolBytes))
                    bytes -= pool[n++].Length;
                if (n > 0)
                {
                    evicted = pool.GetRange(0, n);
                    pool.RemoveRange(0, n);
                }
            }
            else evicted = [entry];
        }
        foreach (var e in evicted ?? []) e.Leave();
    }

    /// <summary>Dispose's part: leaves every pooled segment (section 8 step 2; one whose record is still ready is only
    /// released, for its consumer).</summary>
    private void LeaveReusePool()
    {
        List<OutOfLine>? pool;
        lock (_reuseGate)
        {
            pool = _reusePool;
            _reusePool = null;
        }
        foreach (var entry in pool ?? []) entry.Leave();
    }

    /// <summary>An out-of-line message (docs/format.md section 11.5): its data in a segment of its own (kind 1, typecode 'B',
    /// no lock), named <c>&lt;queue&gt;.m&lt;16 hex&gt;</c>; the ring's record holds the reference. Single-use (persistent:
    /// its consumer removes it) or reusable (last-closer: held by this producer, which puts it in the ring again for a later
    /// message of the same length).</summary>
    private sealed class OutOfLine
    {
        private const string SegmentOwner = "SharedQueue message";
        private readonly SharedQueue _queue;
        private readonly SharedObjectCore _segment;
        private readonly bool _reusable;

        private OutOfLine(SharedQueue queue, SharedObjectCore segment, byte[] reference, bool reusable)
        {
            _queue = queue;
            _segment = segment;
            Reference = reference;
            _reusable = reusable;
            Length = segment.Header.Length;
            // Whoever makes this process leave the segment (eviction, Dispose, process end) keeps its name while the record
            // that references it is still ready: its consumer, who has not joined it yet, will be the last to leave.
            if (reusable) segment.Segment.KeepNameOnLeave = () => queue.MayStillBeReady(Volatile.Read(ref _lastPosition), LastEnd);
        }

        /// <summary>The record's data part: i64 created_unix_ns, u32 creator_pid, u32 name_length, the name.</summary>
        internal byte[] Reference { get; }

        /// <summary>data_length: the messages this segment can carry.</summary>
        internal long Length { get; }

        private ulong _lastPosition, _lastEnd;

        /// <summary>The end (position + size) of the last committed record that referenced this segment; 0 before any.</summary>
        internal ulong LastEnd => Volatile.Read(ref _lastEnd);

        /// <summary>The put's commit (mutex held, before tail is stored): the record is at <paramref name="position"/> and
        /// ends at <paramref name="end"/> (the pad before it excluded).</summary>
        internal void Committing(ulong position, ulong end)
        {
            Volatile.Write(ref _lastPosition, position);
            Volatile.Write(ref _lastEnd, end);
        }

        /// <summary>The producer's part: a reusable segment of the pool when one may be reused, else a new segment; filled
        /// with the message's data before the record is put.</summary>
        internal static OutOfLine Create(SharedQueue queue, in MessageSpec spec, ReadOnlySpan<byte> data, string? text)
        {
            // Its record (the descriptor and the reference to a name '<queue>.m<16 hex>') may not exceed
            // min(capacity / 2, 2^32 - 8) bytes either (docs/format.md section 11.5): refused before anything is made.
            ulong record = RecordHeader + Align8((ulong)spec.DescriptorLength)
                + Align8((ulong)(ReferenceHeader + Encoding.ASCII.GetByteCount(queue.Name) + OutOfLineMarker.Length + 16));
            if (record > RecordLimit(queue._cap))
                throw new ArgumentException(
                    $"The message's descriptor ({spec.DescriptorLength} bytes) does not fit in the queue's {queue._cap}-byte ring: " +
                    "use a larger QueueOptions.Capacity.");
            byte[]? encoded = text is null ? null : MessageSpec.StrictUtf8.GetBytes(text);
            ReadOnlySpan<byte> bytes = encoded ?? data;
            if ((ulong)bytes.Length != spec.DataLength) throw new InvalidOperationException("message length mismatch");
            bool reusable = queue.MakesReusableSegments;
            if (reusable && queue.TakeReusable(bytes.Length) is { } entry)
            {
                try { entry.Overwrite(bytes); }
                catch
                {
                    entry.Leave();
                    throw;
                }
                return entry;
            }
            var options = new SegmentOptions
            {
                Synchronized = false,
                Lifetime = reusable ? SegmentLifetime.LastCloser : SegmentLifetime.Persistent,
                Directory = queue._core.DirectoryOption,       // beside its queue (docs/format.md section 1.3)
            };
            SharedObjectCore? segment = null;
            for (int attempt = 0; segment is null; attempt++)
            {
                string name = queue.Name + OutOfLineMarker + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
                try
                {
                    segment = SharedObjectCore.Create(SegmentOwner, name, SegmentKind.Array, 'B', 1, bytes.Length, "", [], options, bytes);
                }
                catch (SegmentExistsException) when (attempt < 8) { }
            }
            var header = segment.Header;
            int nameLength = Encoding.ASCII.GetByteCount(segment.Name);
            var reference = new byte[ReferenceHeader + nameLength];
            BinaryPrimitives.WriteInt64LittleEndian(reference, header.CreatedUnixNanoseconds);
            BinaryPrimitives.WriteUInt32LittleEndian(reference.AsSpan(8), header.RecordedCreatorPid);
            BinaryPrimitives.WriteUInt32LittleEndian(reference.AsSpan(12), (uint)nameLength);
            Encoding.ASCII.GetBytes(segment.Name, reference.AsSpan(ReferenceHeader));
            return new OutOfLine(queue, segment, reference, reusable);
        }

        internal enum Claim { Claimed, Busy, Dead }

        /// <summary>Reuse conditions 2 and 3 (section 11.5), after the caller checked condition 1: nobody else holds the
        /// segment (the exclusive flock without waiting), its name is still this object and its state is 1; then back to the
        /// shared flock. Busy when another process holds it (try later); Dead when it can never be reused (leave it).</summary>
        internal Claim TryClaim()
        {
            var segment = _segment.Segment;
            if (!segment.TryHoldAlone()) return segment.IsJoined ? Claim.Busy : Claim.Dead;
            bool alive = segment.IsReadyAndStillNamed();
            if (!segment.ShareAgain()) return Claim.Dead;
            // Converting back is not atomic (flock(2)): whoever got the exclusive lock in between may have removed the name.
            return alive && segment.IsReadyAndStillNamed() ? Claim.Claimed : Claim.Dead;
        }

        /// <summary>Writes a new message over the old one in this process's own mapping (the segment is claimed).</summary>
        private void Overwrite(ReadOnlySpan<byte> bytes)
        {
            var segment = _segment.Segment;
            segment.AddRef();
            try { bytes.CopyTo(new Span<byte>(segment.Data, bytes.Length)); }
            finally { segment.Release(); }
        }

        /// <summary>After the put. Single-use: committed, the queue owns the segment; otherwise it is removed. Reusable: kept
        /// for a later message either way (uncommitted, nothing references the new bytes).</summary>
        internal void Finish(bool committed)
        {
            if (_reusable)
            {
                _queue.ReturnReusable(this);
                return;
            }
            if (!committed)
            {
                try { _segment.Unlink(); }
                catch (Exception e) when (e is ISharedBridgeException) { /* gone already */ }
            }
            _segment.Dispose();
        }

        /// <summary>Section 8 step 2 for a segment this producer will not reuse (the name stays while a record may reference
        /// it: <see cref="MappedSegment.KeepNameOnLeave"/>).</summary>
        internal void Leave() => _segment.Dispose();

        /// <summary>The consumer's part for a message it gets or takes (queue mutex held, before the record leaves state 1):
        /// the referenced segment mapped, checked against the reference, a reusable one held with its shared flock and kept
        /// mapped for later messages in the queue object's <see cref="MappedDataCache"/> (re-checked for every message, section
        /// 8 step 3), a single-use one's name removed. The caller owns the result: disposing it ends this use of the segment.
        /// Errors as <see cref="Attach"/>.</summary>
        internal static HeldData Map(SharedQueue queue, ulong position, in Record record)
        {
            var (name, created, pid) = ReadReference(queue, position, record);
            if (queue._dataCache.TryOpen(name, record.DataLength, pid, created) is { } cached) return cached;
            var segment = Open(queue, position, name, created, pid, record.DataLength);
            if (segment.Header.Lifetime == SegmentLifetime.Persistent)
            {
                UnlinkSingleUse(segment);
                return new HeldData(segment);
            }
            long size = segment.Segment.ObjectSizeNow();
            return (size >= 0 ? queue._dataCache.Add(name, segment, size) : null) ?? new HeldData(segment);
        }

        /// <summary>Attaches the referenced segment for this message alone (queue mutex held, before the record leaves state
        /// 1): a reusable one with its shared flock (section 8), checked against the reference, and removes the name of a
        /// single-use one (by identity); with <paramref name="remove"/>, whatever its lifetime. The caller owns the result:
        /// disposing it leaves a reusable segment (the last to leave removes it).</summary>
        internal static SharedObjectCore Attach(SharedQueue queue, ulong position, in Record record, bool remove = false)
        {
            var (name, created, pid) = ReadReference(queue, position, record);
            var segment = Open(queue, position, name, created, pid, record.DataLength);
            if (remove || segment.Header.Lifetime == SegmentLifetime.Persistent) UnlinkSingleUse(segment);
            return segment;
        }

        /// <summary>The record's reference (section 11.5): the name, checked to be one of this queue's, and the words the
        /// segment's header must have.</summary>
        private static (string Name, long Created, uint Pid) ReadReference(SharedQueue queue, ulong position, in Record record)
        {
            byte* r = record.DataStart;
            long created = *(long*)r;
            uint pid = *(uint*)(r + 8), nameLength = *(uint*)(r + 12);
            var nameBytes = new ReadOnlySpan<byte>(r + ReferenceHeader, (int)nameLength);
            foreach (byte b in nameBytes)
                if (b is < 0x21 or > 0x7E) throw queue.CorruptRecord(position, "an out-of-line reference whose name is not printable ASCII");
            string name = Encoding.ASCII.GetString(nameBytes);
            if (!IsOutOfLineName(name, out string owner) || owner != queue.Name)
                throw queue.CorruptRecord(position, $"an out-of-line reference to \"{name}\", which is not one of this queue's (\"{queue.Name}.m<16 hex>\")");
            return (name, created, pid);
        }

        /// <summary>Opens (afresh) the data segment <paramref name="name"/> and checks it against the reference: corrupt
        /// data when it is gone or another object.</summary>
        private static SharedObjectCore Open(SharedQueue queue, ulong position, string name, long created, uint pid, ulong dataLength)
        {
            try
            {
                return SharedObjectCore.Open(SegmentOwner, name,
                    new OpenOptions { ReadyTimeout = TimeSpan.FromSeconds(1), Directory = queue._core.DirectoryOption }, h =>
                    h.Kind == SegmentKind.Array && h.TypeCode == 'B' && h.LockKind == LockKind.None && (ulong)h.Length == dataLength
                    && h.RecordedCreatorPid == pid && h.CreatedUnixNanoseconds == created
                    && h.Lifetime is SegmentLifetime.LastCloser or SegmentLifetime.Persistent
                        ? null
                        : "it does not match the reference in the queue's record (or its lifetime is not last-closer or persistent)");
            }
            catch (SegmentNotFoundException)
            {
                throw new CorruptDataException(queue.Name, (long)position,
                    $"The message at ring position {position} of queue \"{queue.Name}\" lives out of line in \"{name}\", which is gone " +
                    "(removed with the queue's name, or by `sharedbridge reap`): that message is lost.");
            }
            catch (TypeMismatchException e)
            {
                throw queue.CorruptRecord(position, $"its out-of-line segment \"{name}\" is another object ({e.Message})");
            }
        }

        private static void UnlinkSingleUse(SharedObjectCore segment)
        {
            try { segment.Unlink(); }
            catch (SegmentNotFoundException) { /* another remover was first: the mapping is ours all the same */ }
        }

        /// <summary>The message of a dead taker is lost (section 11.3, advance head): its single-use segment is removed; a
        /// reusable one is joined and left (section 8), so that the last to leave removes it: its producer, when it still
        /// holds it, reuses it instead. Never throws for a missing or foreign segment.</summary>
        internal static void LoseReferenced(SharedQueue queue, ulong position, in Record record)
        {
            try { Attach(queue, position, record).Dispose(); }
            catch (Exception e) when (e is ISharedBridgeException) { }
        }

        /// <summary>Removes the segment a record refers to, whatever its lifetime (its message is lost or the queue goes away).
        /// Never throws for a missing or foreign segment.</summary>
        internal static void UnlinkReferenced(SharedQueue queue, ulong position, in Record record)
        {
            try { Attach(queue, position, record, remove: true).Dispose(); }
            catch (Exception e) when (e is ISharedBridgeException) { }
        }
    }

    /// <summary>What the reaper needs to know of a reusable data segment's queue (section 8, reaping; section 11.5).</summary>
    internal enum OutOfLineUse { QueueGone, Unreferenced, Referenced, Held, Unknown }

    /// <summary>The reaper's judgement of data segment <paramref name="dataName"/> of queue <paramref name="queueName"/>
    /// (section 8): QueueGone when no segment has the queue's name or it is not a queue; Unreferenced when no record of the
    /// queue in state 1 or 2 references it, read with the queue's mutex held (waiting up to <paramref name="lockTimeout"/>);
    /// Referenced; Held when another process holds it; Unknown after the timeout or for a ring that breaks the rules. <paramref name="holdAlone"/> (the reaper's
    /// exclusive flock without waiting) must succeed for QueueGone and Unreferenced; for the latter it is taken with the
    /// mutex held, so that no consumer joins the segment meanwhile and no producer puts a record that references it.</summary>
    internal static OutOfLineUse FindOutOfLineUse(string queueName, string dataName, TimeSpan lockTimeout, Func<bool> holdAlone)
    {
        if (!MappedSegment.Exists(queueName)) return holdAlone() ? OutOfLineUse.QueueGone : OutOfLineUse.Held;
        MappedSegment? queue;
        try { queue = MappedSegment.OpenOnce(queueName, TimeSpan.Zero, allowOtherOwner: false); }
        catch (SegmentNotFoundException) { return holdAlone() ? OutOfLineUse.QueueGone : OutOfLineUse.Held; }
        catch (Exception e) when (e is ISharedBridgeException or IOException or UnauthorizedAccessException) { return OutOfLineUse.Unknown; }
        try
        {
            if (queue.Header.Kind != SegmentKind.Queue) return holdAlone() ? OutOfLineUse.QueueGone : OutOfLineUse.Held;
            if (queue.Mutex is not { } mutex || !mutex.TryLock(lockTimeout, out _)) return OutOfLineUse.Unknown;
            try
            {
                var use = ScanReferences(queue, Encoding.ASCII.GetBytes(dataName));
                return use != OutOfLineUse.Unreferenced || holdAlone() ? use : OutOfLineUse.Held;
            }
            finally { mutex.Unlock(); }
        }
        catch (Exception e) when (e is ISharedBridgeException or ObjectDisposedException) { return OutOfLineUse.Unknown; }
        finally
        {
            queue.Release();
        }
    }

    /// <summary>The walk of <see cref="FindOutOfLineUse"/> from head to tail (mutex held): every record is checked against the
    /// ring's bounds; the references of the out-of-line records in state 1 or 2 are compared with the name.</summary>
    private static OutOfLineUse ScanReferences(MappedSegment queue, byte[] name)
    {
        byte* c = queue.Data, ring = c + QueueLayout.Ring;
        ulong cap = (ulong)queue.Header.Length - QueueLayout.Ring, mask = cap - 1;
        ulong head = Volatile.Read(ref *(ulong*)(c + Head)), tail = Volatile.Read(ref *(ulong*)(c + Tail));
        if (head > tail || tail - head > cap || ((head | tail) & 7) != 0) return OutOfLineUse.Unknown;
        for (ulong p = head; p < tail;)
        {
            ulong o = p & mask;
            byte* rec = ring + o;
            uint size = *(uint*)rec;
            if (size < PadMinimum || (size & 7) != 0 || o + size > cap || size > tail - p) return OutOfLineUse.Unknown;
            if (rec[RecState] is StateReady or StateTaken && size >= RecordHeader && (rec[RecFlags] & FlagOutOfLine) != 0)
            {
                ulong at = RecordHeader + Align8(*(uint*)(rec + RecDescLength));
                if (at + ReferenceHeader > size) return OutOfLineUse.Unknown;
                uint length = *(uint*)(rec + at + 12);
                if (length > size - at - ReferenceHeader) return OutOfLineUse.Unknown;
                if (new ReadOnlySpan<byte>(rec + at + ReferenceHeader, (int)length).SequenceEqual(name)) return OutOfLineUse.Referenced;
            }
            p += size;
        }
        return OutOfLineUse.Unreferenced;
    }
}
