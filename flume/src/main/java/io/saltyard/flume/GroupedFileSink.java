package io.saltyard.flume;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.time.format.ResolverStyle;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.flume.Channel;
import org.apache.flume.ChannelException;
import org.apache.flume.Context;
import org.apache.flume.Event;
import org.apache.flume.EventDeliveryException;
import org.apache.flume.Transaction;
import org.apache.flume.conf.BatchSizeSupported;
import org.apache.flume.conf.Configurable;
import org.apache.flume.conf.ConfigurationException;
import org.apache.flume.instrumentation.SinkCounter;
import org.apache.flume.sink.AbstractSink;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes each event's body and a newline to {@code <directory>/<env>/<app>/<day>.log}, where env
 * and app are event headers and day is the date part of the event's {@code time} header. Flume has
 * no stock sink that files events by header values (the file_roll sink writes one stream, rolled
 * by time), and the log node keeps one file per environment, app and day.
 *
 * <p>Delivery: one channel transaction per batch. The batch is appended, every file it touched is
 * flushed and fsynced, and only then is the transaction committed; any I/O error rolls it back
 * and the events are taken again later. So no event is lost: a crash between the fsync and the
 * commit makes the channel deliver that batch again (duplicates, never a gap). After a failed
 * batch the touched files are cut back to where the batch began (so a retry does not double
 * it), and a file that ends in a partial line when it is opened (a crash mid-write) has that
 * line cut off: it belongs to a batch that was never committed and comes again.
 *
 * <p>The day is the first 10 characters of the time header (YYYY-MM-DD of an ISO-8601 /
 * RFC 3339 timestamp, in the writer's offset, not converted); a missing or malformed time
 * files the event under today's UTC day. Directories are created as needed (default mode).
 *
 * <p>Header values become path components only when they match {@link #SAFE}: anything else is
 * filed under {@code _invalid} and a missing header under {@code _unknown}, so no event (a
 * {@code ../../etc} header, a slash) can write outside {@code directory}.
 *
 * <p>Settings: {@code directory} (required, absolute), {@code batchSize} (1000),
 * {@code maxOpenFiles} (64: the least recently used file is closed beyond that),
 * {@code idleWaitMs} (100: how long to wait when the channel is empty before taking again; a
 * sink that answers BACKOFF instead is put to sleep by Flume's SinkRunner for 1 s, 2 s, ... up
 * to 5 s, which is how long a line would then wait in the channel),
 * {@code envHeader} (env), {@code appHeader} (app), {@code timeHeader} (time).
 */
public class GroupedFileSink extends AbstractSink implements Configurable, BatchSizeSupported {

  private static final Logger LOG = LoggerFactory.getLogger(GroupedFileSink.class);

  /** The only header values used as a path component: no "/", and never "." or "..". */
  static final Pattern SAFE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  static final String INVALID = "_invalid";
  static final String UNKNOWN = "_unknown";

  // Four-digit year, and STRICT: a real calendar day (2026-02-30 is malformed, not March 2).
  private static final DateTimeFormatter DAY =
      DateTimeFormatter.ofPattern("uuuu-MM-dd").withResolverStyle(ResolverStyle.STRICT);

  // Appends are collected per file and written in chunks of about this size: fewer syscalls
  // than one write per event, and a batch's memory stays bounded.
  private static final int WRITE_CHUNK = 64 * 1024;

  private Path directory;
  private int batchSize;
  private int maxOpenFiles;
  private int idleWaitMs;
  private String envHeader;
  private String appHeader;
  private String timeHeader;
  private SinkCounter counter;

  /** Open files by their path relative to directory; access order, so the eldest is the LRU. */
  private final LinkedHashMap<String, OpenFile> open = new LinkedHashMap<>(16, 0.75f, true);

  @Override
  public void configure(Context context) {
    String dir = context.getString("directory");
    if (dir == null || dir.trim().isEmpty()) {
      throw new ConfigurationException(
          "GroupedFileSink " + getName() + ": the setting 'directory' is required (an absolute path)");
    }
    Path path = Paths.get(dir.trim());
    if (!path.isAbsolute()) {
      throw new ConfigurationException("GroupedFileSink " + getName()
          + ": the setting 'directory' must be an absolute path, got '" + dir.trim() + "'");
    }
    directory = path.normalize();
    batchSize = positive(context, "batchSize", 1000);
    maxOpenFiles = positive(context, "maxOpenFiles", 64);
    idleWaitMs = positive(context, "idleWaitMs", 100);
    envHeader = context.getString("envHeader", "env");
    appHeader = context.getString("appHeader", "app");
    timeHeader = context.getString("timeHeader", "time");
    if (counter == null) {
      counter = new SinkCounter(getName());
    }
  }

  private int positive(Context context, String key, int dflt) {
    Integer value;
    try {
      value = context.getInteger(key, dflt);
    } catch (NumberFormatException e) {
      throw new ConfigurationException(
          "GroupedFileSink " + getName() + ": '" + key + "' must be a number", e);
    }
    if (value == null || value <= 0) {
      throw new ConfigurationException(
          "GroupedFileSink " + getName() + ": '" + key + "' must be positive, got " + value);
    }
    return value;
  }

  /** Flume checks it against the channel's transactionCapacity before it wires the sink in. */
  @Override
  public long getBatchSize() {
    return batchSize;
  }

  @Override
  public synchronized void start() {
    counter.start();
    super.start();
    LOG.info("GroupedFileSink {} writing under {} (batchSize {}, maxOpenFiles {})",
        getName(), directory, batchSize, maxOpenFiles);
  }

  @Override
  public synchronized void stop() {
    // The runner has stopped calling process(), so no batch is in flight: only closing is left.
    closeAll();
    counter.stop();
    super.stop();
    LOG.info("GroupedFileSink {} stopped. Metrics: {}", getName(), counter);
  }

  @Override
  public Status process() throws EventDeliveryException {
    Channel channel = getChannel();
    Transaction tx = channel.getTransaction();
    Set<OpenFile> touched = new LinkedHashSet<>();
    int count = 0;
    tx.begin();
    try {
      for (; count < batchSize; count++) {
        Event event = channel.take();
        if (event == null) {
          break;
        }
        OpenFile file = fileFor(event);
        if (touched.add(file)) {
          file.markBatchStart();
        }
        byte[] body = event.getBody();
        file.append(body != null ? body : new byte[0]);
      }
      if (count == 0) {
        counter.incrementBatchEmptyCount();
      } else if (count < batchSize) {
        counter.incrementBatchUnderflowCount();
      } else {
        counter.incrementBatchCompleteCount();
      }
      counter.addToEventDrainAttemptCount(count);
      // Durable first, then commit: the channel forgets the events only once they are on disk.
      for (OpenFile file : touched) {
        file.flushAndSync();
      }
      tx.commit();
      counter.addToEventDrainSuccessCount(count);
      if (count == 0) {
        // Wait here, briefly, rather than answer BACKOFF (see idleWaitMs).
        try {
          Thread.sleep(idleWaitMs);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return Status.BACKOFF;
        }
      }
      return Status.READY;
    } catch (IOException e) {
      rollback(tx, touched);
      counter.incrementEventWriteFail();
      LOG.error("GroupedFileSink " + getName() + ": writing a batch failed; rolled back, "
          + "the events will be taken again", e);
      return Status.BACKOFF;
    } catch (ChannelException e) {
      rollback(tx, touched);
      counter.incrementChannelReadFail();
      throw new EventDeliveryException("GroupedFileSink " + getName() + ": channel failed", e);
    } catch (Throwable t) {
      rollback(tx, touched);
      if (t instanceof Error) {
        throw (Error) t;
      }
      throw new EventDeliveryException("GroupedFileSink " + getName() + ": batch failed", t);
    } finally {
      tx.close();
    }
  }

  private void rollback(Transaction tx, Set<OpenFile> touched) {
    try {
      tx.rollback();
    } catch (RuntimeException e) {
      LOG.warn("GroupedFileSink {}: rollback failed", getName(), e);
    }
    // The rolled-back events come again: cut what this batch appended so they are not doubled
    // (best effort; a file that cannot be cut keeps duplicates, never a half line, see openFile()).
    for (OpenFile file : touched) {
      file.truncateToBatchStart();
    }
    closeAll();
  }

  /** The open file for an event, opening it (and closing the least recently used) as needed. */
  private OpenFile fileFor(Event event) throws IOException {
    Map<String, String> headers = event.getHeaders();
    String env = component(headers.get(envHeader));
    String app = component(headers.get(appHeader));
    String key = env + "/" + app + "/" + day(headers.get(timeHeader)) + ".log";
    OpenFile file = open.get(key);
    if (file != null) {
      return file;
    }
    while (open.size() >= maxOpenFiles) {
      Iterator<OpenFile> eldest = open.values().iterator();
      OpenFile evicted = eldest.next();
      eldest.remove();
      // A file of the current batch may go too: it is synced here, before the commit.
      evicted.close();
    }
    try {
      file = openFile(key);
    } catch (IOException e) {
      counter.incrementConnectionFailedCount();
      throw e;
    }
    counter.incrementConnectionCreatedCount();
    open.put(key, file);
    return file;
  }

  static String component(String value) {
    if (value == null) {
      return UNKNOWN;
    }
    return SAFE.matcher(value).matches() ? value : INVALID;
  }

  /** The date part of an ISO-8601 / RFC 3339 timestamp, else today in UTC. */
  static String day(String time) {
    if (time != null && time.length() >= 10
        && (time.length() == 10 || "Tt ".indexOf(time.charAt(10)) >= 0)) {
      String day = time.substring(0, 10);
      try {
        LocalDate.parse(day, DAY);
        return day;
      } catch (DateTimeParseException e) {
        // malformed: today, below
      }
    }
    return LocalDate.now(ZoneOffset.UTC).format(DAY);
  }

  private void closeAll() {
    List<OpenFile> files = new ArrayList<>(open.values());
    open.clear();
    for (OpenFile file : files) {
      try {
        file.close();
      } catch (IOException e) {
        LOG.warn("GroupedFileSink {}: closing {} failed", getName(), file.path, e);
      }
    }
  }

  /** Opens (creating as needed) the file at key under directory, cutting a partial last line. */
  private OpenFile openFile(String key) throws IOException {
    Path path = directory.resolve(key);
    if (!path.normalize().startsWith(directory)) { // cannot happen with SAFE; kept as a guard
      throw new IOException("refusing a path outside " + directory + ": " + key);
    }
    boolean created = !Files.exists(path);
    if (created) {
      createDirectories(path.getParent());
    }
    FileChannel channel = FileChannel.open(path, StandardOpenOption.CREATE,
        StandardOpenOption.WRITE, StandardOpenOption.READ);
    try {
      // A tail without a newline is part of a batch that was never committed (a commit follows
      // the fsync of whole lines), left by a crash: its events come again from the channel, so
      // the half line is cut off rather than glued to the front of the next line.
      long size = channel.size();
      long keep = endOfLastLine(channel, size);
      if (keep < size) {
        LOG.warn("GroupedFileSink {}: {} ended in a partial line ({} bytes); cut off, its "
            + "events are redelivered", getName(), path, size - keep);
        channel.truncate(keep);
        channel.force(true);
      }
      channel.position(keep);
      if (created) {
        // The new directory entry must be durable too, or a power loss could lose the file.
        syncDirectory(path.getParent());
      }
    } catch (IOException e) {
      channel.close();
      throw e;
    }
    return new OpenFile(path, channel);
  }

  /** The length of the file up to and including its last newline (0 without one). */
  private static long endOfLastLine(FileChannel channel, long size) throws IOException {
    ByteBuffer block = ByteBuffer.allocate(8192);
    long end = size;
    while (end > 0) {
      long start = Math.max(0, end - block.capacity());
      block.clear();
      block.limit((int) (end - start));
      while (block.hasRemaining()) {
        if (channel.read(block, start + block.position()) < 0) {
          throw new IOException("file shrank while reading it");
        }
      }
      for (int i = (int) (end - start) - 1; i >= 0; i--) {
        if (block.get(i) == '\n') {
          return start + i + 1;
        }
      }
      end = start;
    }
    return 0;
  }

  /** One appended file: bytes of the current batch not yet written, and the file channel. */
  private final class OpenFile {
    final Path path;
    final FileChannel channel;
    final ByteArrayOutputStream pending = new ByteArrayOutputStream();
    long batchStart = -1;
    boolean dirty; // written since the last fsync
    boolean closed;

    OpenFile(Path path, FileChannel channel) {
      this.path = path;
      this.channel = channel;
    }

    void markBatchStart() throws IOException {
      batchStart = channel.position() + pending.size();
    }

    void append(byte[] body) throws IOException {
      pending.write(body);
      pending.write('\n');
      dirty = true;
      if (pending.size() >= WRITE_CHUNK) {
        drain();
      }
    }

    private void drain() throws IOException {
      if (pending.size() == 0) {
        return;
      }
      ByteBuffer buf = ByteBuffer.wrap(pending.toByteArray());
      while (buf.hasRemaining()) {
        channel.write(buf);
      }
      pending.reset();
    }

    void flushAndSync() throws IOException {
      if (closed) {
        return; // evicted during the batch: close() synced it
      }
      drain();
      if (dirty) {
        // fdatasync: the data and the size needed to read it back.
        channel.force(false);
        dirty = false;
      }
    }

    void truncateToBatchStart() {
      pending.reset();
      if (closed || batchStart < 0) {
        return;
      }
      try {
        channel.truncate(batchStart);
        channel.position(batchStart);
      } catch (IOException e) {
        LOG.warn("GroupedFileSink {}: could not cut {} back to {} bytes", getName(), path,
            batchStart, e);
      }
    }

    void close() throws IOException {
      if (closed) {
        return;
      }
      closed = true;
      try {
        flushAndSyncOpen();
      } finally {
        channel.close();
        counter.incrementConnectionClosedCount();
      }
    }

    private void flushAndSyncOpen() throws IOException {
      drain();
      if (dirty) {
        channel.force(false);
        dirty = false;
      }
    }
  }

  private static void createDirectories(Path dir) throws IOException {
    // Created one level at a time so each new entry's parent can be synced.
    if (Files.isDirectory(dir)) {
      return;
    }
    createDirectories(dir.getParent());
    try {
      Files.createDirectory(dir);
    } catch (java.nio.file.FileAlreadyExistsException e) {
      return;
    }
    syncDirectory(dir.getParent());
  }

  private static void syncDirectory(Path dir) throws IOException {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    }
  }
}
