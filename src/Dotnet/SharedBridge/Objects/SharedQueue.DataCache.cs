using SharedBridge.Objects;
using SharedBridge.Platform;

namespace SharedBridge;

public sealed unsafe partial class SharedQueue
{
    /// <summary>How many reusable data segments one SharedQueue object keeps mapped as a consumer, and how many bytes of them:
    /// as the producer's pool (<see cref="ReusePoolSize"/>, <see cref="ReusePoolBytes"/>; Python's MAX_MAPPED and
    /// MAX_MAPPED_BYTES), since a producer reuses its segments in turn and its consumer meets the same ones again.</summary>
    internal const int MappedCacheSize = ReusePoolSize;
    internal const long MappedCacheBytes = ReusePoolBytes;

    // The reusable data segments this object keeps mapped as a consumer (section 11.5); released at Dispose.
    private readonly MappedDataCache _dataCache = new();

    /// <summary>Tests only: the names of the data segments this object keeps mapped now, least recently used first.</summary>
    internal IReadOnlyList<string> MappedDataSegmentNames => _dataCache.Names();

    /// <summary>The bytes of one out-of-line message, mapped, until <see cref="Dispose"/>: a segment opened for this message
    /// alone (single-use, or not kept), or one of the queue object's <see cref="MappedDataCache"/> held for it.</summary>
    internal sealed class HeldData : IDisposable
    {
        private readonly SharedObjectCore? _own;
        private readonly MappedDataCache? _cache;
        private readonly MappedDataCache.Entry? _entry;
        private int _ended;

        internal HeldData(SharedObjectCore own)
        {
            _own = own;
            Data = own.Segment.Data;
            Length = own.Header.Length;
        }

        internal HeldData(MappedDataCache cache, MappedDataCache.Entry entry)
        {
            _cache = cache;
            _entry = entry;
            Data = entry.Core.Segment.Data;
            Length = entry.Core.Header.Length;
        }

        internal byte* Data { get; }
        internal long Length { get; }

        /// <summary>This process's use of the segment for the message ends (section 8 step 2; a kept one stays mapped).</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) != 0) return;
            if (_own is not null) _own.Dispose();
            else _cache!.End(_entry!);
        }
    }

    /// <summary>
    /// The reusable (last-closer) data segments (docs/format.md section 11.5) one SharedQueue object keeps mapped as a
    /// consumer, by name: a producer puts the same few segments in the ring again and again, and opening one afresh for every
    /// message (shm_open, fstat, preads of the header, mmap, munmap, and the page faults of the fresh mapping on every first
    /// touch) cost more than the copy of the data itself. Python's consumer does the same (queue_data_segments.MappedCache).
    /// </summary>
    /// <remarks>
    /// Between messages an entry keeps its descriptor and mapping but no lock, so that its producer may reuse it (11.5
    /// "Reuse" (2)), nobody counts it as holding the segment and a reaper may remove it. Each message that references it again
    /// is opened as 11.5 and section 8 step 3 say, against the private copy of the header kept from the first open: the
    /// reference's words (element_count, creator_pid, created_unix_ns) and the object's size unchanged, the shared flock
    /// taken, then the name still this object (device and inode) and the state not retired. An entry that fails a check is
    /// closed and the name opened afresh, which reports what is wrong exactly as an uncached open does: a name that now
    /// refers to another object is never served from the cache. The hold of a message ends at its Dispose with section 8
    /// step 2 (the last to leave retires and removes the name; otherwise only the lock is released and the entry stays).
    /// Bounded like the producer's pool; retired entries are dropped. Released at the queue object's Dispose: entries not in
    /// use are closed (they hold no lock, so nothing is removed), an entry in use when its message is disposed. Thread safety:
    /// opening runs with the queue's mutex held, but messages end, and the queue is disposed, on any thread: the entries are
    /// guarded by a lock of their own, never held across a system call.
    /// </remarks>
    internal sealed class MappedDataCache
    {
        /// <summary>The wait for the shared flock of a kept segment (a closer or reaper holds the exclusive one only for an
        /// instant, section 8 step 3), as an uncached open of a data segment waits.</summary>
        private static readonly TimeSpan RejoinTimeout = TimeSpan.FromSeconds(1);

        /// <summary>One kept segment: its core (descriptor, mapping, private header copy), the object's size when it was
        /// opened, and whether a message uses it now (then its descriptor holds the shared flock).</summary>
        internal sealed class Entry(string name, SharedObjectCore core, long size)
        {
            internal string Name { get; } = name;
            internal SharedObjectCore Core { get; } = core;
            internal long Size { get; } = size;
            internal long Length => Core.Header.Length;
            internal bool Held;     // guarded by the cache's lock
        }

        private List<Entry>? _entries = [];     // least recently used first; null once released
        private readonly object _gate = new();

        /// <summary>The message's data in the kept mapping of <paramref name="name"/>, held (the shared flock taken and the
        /// checks of section 8 step 3 passed); null when it is not kept, in use, or no longer valid (then it is closed).</summary>
        internal HeldData? TryOpen(string name, ulong dataLength, uint creatorPid, long createdUnixNanoseconds)
        {
            Entry? entry = null;
            lock (_gate)
            {
                var entries = _entries;
                if (entries is null) return null;
                int i = entries.FindIndex(e => e.Name == name);
                if (i < 0) return null;
                entry = entries[i];
                entries.RemoveAt(i);
                entries.Add(entry);             // the most recently used last
                // In use already (a conforming producer does not reuse it then): a description of its own, opened afresh.
                if (entry.Held) return null;
                entry.Held = true;
            }
            bool ok = false;
            try
            {
                var segment = entry.Core.Segment;
                var h = segment.Header;         // the private copy from the first open
                ok = (ulong)h.Length == dataLength && h.RecordedCreatorPid == creatorPid && h.CreatedUnixNanoseconds == createdUnixNanoseconds
                     && segment.ObjectSizeNow() == entry.Size
                     && segment.RejoinKept(RejoinTimeout);
            }
            catch (Exception e) when (e is ISharedBridgeException or ObjectDisposedException or IOException) { }
            if (ok) return new HeldData(this, entry);
            // No lock is held (RejoinKept released it): closed; the caller opens the name afresh, which reports what is wrong.
            lock (_gate)
            {
                entry.Held = false;
                _entries?.Remove(entry);
            }
            entry.Core.Dispose();
            return null;
        }

        /// <summary>Keeps the last-closer segment <paramref name="core"/> just opened and joined for a message (the object's
        /// size <paramref name="size"/>) and returns it held; null when the queue object is disposed (the caller owns it).</summary>
        internal HeldData? Add(string name, SharedObjectCore core, long size)
        {
            var entry = new Entry(name, core, size) { Held = true };
            List<Entry> evicted = [];
            lock (_gate)
            {
                var entries = _entries;
                if (entries is null) return null;
                int i = entries.FindIndex(e => e.Name == name);
                if (i >= 0)
                {
                    var old = entries[i];
                    entries.RemoveAt(i);
                    if (!old.Held) evicted.Add(old);    // else closed when its message ends
                }
                entries.Add(entry);
                Bound(entries, evicted);
            }
            foreach (var old in evicted) old.Core.Dispose();
            return new HeldData(this, entry);
        }

        /// <summary>Drops (into <paramref name="evicted"/>, or at their message's end) the entries whose segment was retired
        /// (its memory is freed once unmapped), then the least recently used beyond the bounds; the newest always stays.</summary>
        private static void Bound(List<Entry> entries, List<Entry> evicted)
        {
            for (int i = 0; i < entries.Count - 1; i++)
            {
                var e = entries[i];
                if (e.Held || !IsRetired(e)) continue;
                entries.RemoveAt(i--);
                evicted.Add(e);
            }
            long bytes = 0;
            foreach (var e in entries) bytes += e.Length;
            while (entries.Count > 1 && (entries.Count > MappedCacheSize || bytes > MappedCacheBytes))
            {
                var e = entries[0];
                entries.RemoveAt(0);
                bytes -= e.Length;
                if (!e.Held) evicted.Add(e);
            }
        }

        private static bool IsRetired(Entry e)
        {
            try { return e.Core.Segment.LiveState == (int)Format.HeaderLayout.StateRetired; }
            catch (ObjectDisposedException) { return true; }
        }

        /// <summary>A message's hold ends: section 8 step 2 on the entry's descriptor. It stays kept unless this process was
        /// the last (it retired and removed the segment) or the entry was dropped or the cache released meanwhile.</summary>
        internal void End(Entry entry)
        {
            bool others = entry.Core.Segment.LeaveKeepingMapping();
            bool keep;
            lock (_gate)
            {
                entry.Held = false;
                bool kept = _entries is { } entries && entries.Contains(entry);
                keep = others && kept;
                if (kept && !keep) _entries!.Remove(entry);
            }
            if (!keep) entry.Core.Dispose();        // holds no lock now: only unmaps and closes
        }

        /// <summary>The queue object's Dispose: closes every entry not in use (none holds a lock: nothing is removed); one in
        /// use is closed when its message ends.</summary>
        internal void Release()
        {
            List<Entry>? entries;
            lock (_gate)
            {
                entries = _entries;
                _entries = null;
            }
            foreach (var e in entries ?? [])
            {
                bool held;
                lock (_gate) held = e.Held;
                if (!held) e.Core.Dispose();
            }
        }

        internal IReadOnlyList<string> Names()
        {
            lock (_gate) return _entries?.Select(e => e.Name).ToList() ?? [];
        }
    }
}
