using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using SharedBridge.Format;
using SharedBridge.Objects;
using static SharedBridge.Format.QueueLayout;

namespace SharedBridge;

public sealed unsafe partial class SharedQueue
{
    /// <summary>An out-of-line message (docs/format.md section 11.5): its data in a segment of its own (kind 1, typecode
    /// 'B', no lock, persistent), named <c>&lt;queue&gt;.m&lt;16 hex&gt;</c>; the ring's record holds the reference.</summary>
    private sealed class OutOfLine
    {
        private const string SegmentOwner = "SharedQueue message";
        private readonly SharedObjectCore _segment;

        private OutOfLine(SharedObjectCore segment, byte[] reference)
        {
            _segment = segment;
            Reference = reference;
        }

        /// <summary>The record's data part: i64 created_unix_ns, u32 creator_pid, u32 name_length, the name.</summary>
        internal byte[] Reference { get; }

        /// <summary>The producer's part: creates and fills the segment before the record is put.</summary>
        internal static OutOfLine Create(SharedQueue queue, in MessageSpec spec, ReadOnlySpan<byte> data, string? text)
        {
            byte[]? encoded = text is null ? null : MessageSpec.StrictUtf8.GetBytes(text);
            ReadOnlySpan<byte> bytes = encoded ?? data;
            if ((ulong)bytes.Length != spec.DataLength) throw new InvalidOperationException("message length mismatch");
            var options = new SegmentOptions { Synchronized = false, Lifetime = SegmentLifetime.Persistent };
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
            return new OutOfLine(segment, reference);
        }

        /// <summary>After the put: committed, the queue owns the segment; otherwise it is removed.</summary>
        internal void Finish(bool committed)
        {
            if (!committed)
            {
                try { _segment.Unlink(); }
                catch (SharedBridgeException) { /* gone already */ }
            }
            _segment.Dispose();
        }

        /// <summary>The consumer's part (queue mutex held): attaches the referenced segment, checks it against the
        /// reference, removes its name (by identity). The caller owns the result.</summary>
        internal static SharedObjectCore Attach(SharedQueue queue, ulong position, in Record record)
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
            SharedObjectCore segment;
            ulong dataLength = record.DataLength;
            try
            {
                segment = SharedObjectCore.Open(SegmentOwner, name, new OpenOptions { ReadyTimeout = TimeSpan.FromSeconds(1) }, h =>
                    h.Kind == SegmentKind.Array && h.TypeCode == 'B' && h.LockKind == LockKind.None && (ulong)h.Length == dataLength
                    && h.RecordedCreatorPid == pid && h.CreatedUnixNanoseconds == created
                        ? null
                        : "it does not match the reference in the queue's record");
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
            try { segment.Unlink(); }
            catch (SegmentNotFoundException) { /* another remover was first: the mapping is ours all the same */ }
            return segment;
        }

        /// <summary>Removes the segment a record refers to (its message is lost or the queue goes away). Never throws for
        /// a missing or foreign segment.</summary>
        internal static void UnlinkReferenced(SharedQueue queue, ulong position, in Record record)
        {
            try { Attach(queue, position, record).Dispose(); }
            catch (SharedBridgeException) { }
        }
    }
}
