package io.saltyard.flume;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

import org.apache.flume.ChannelFactory;
import org.apache.flume.SinkFactory;
import org.apache.flume.SourceFactory;
import org.apache.flume.channel.DefaultChannelFactory;
import org.apache.flume.conf.ComponentConfiguration;
import org.apache.flume.conf.FlumeConfiguration;
import org.apache.flume.conf.FlumeConfiguration.AgentConfiguration;
import org.apache.flume.conf.FlumeConfigurationError;
import org.apache.flume.conf.sink.SinkGroupConfiguration;
import org.apache.flume.node.ConfigurationSource;
import org.apache.flume.node.FileConfigurationSource;
import org.apache.flume.node.MaterializedConfiguration;
import org.apache.flume.node.UriConfigurationProvider;
import org.apache.flume.sink.DefaultSinkFactory;
import org.apache.flume.source.DefaultSourceFactory;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.LoggerConfig;
import org.apache.logging.log4j.core.config.Property;

/**
 * Checks a Flume properties file before an agent is restarted with it, since Flume itself has no
 * such command and, on a bad file, starts with the broken components silently dropped (or, for an
 * unknown source/sink/channel type, with nothing at all).
 *
 * <pre>java -cp 'lib/*' io.saltyard.flume.CheckConfig -n AGENT -f FILE [-v]</pre>
 *
 * <p>The file goes through Flume's own loading, the code the agent runs: {@link
 * UriConfigurationProvider} reads it (with Flume's ${...} substitution), {@link
 * FlumeConfiguration} validates it, and {@code getConfiguration()} creates and configures each
 * component and wires them together. Every source, channel, sink and sink group the file declares
 * for the agent must come out of that, and Flume must report no configuration error for it;
 * otherwise each problem is printed on stderr as one line ({@code <kind> <name>: <reason>}, the
 * reason taken from what Flume logged) and the exit code is 1. A good file prints
 * {@code OK: <n> sources, <n> channels, <n> sinks} and exits 0; bad usage exits 2.
 *
 * <p>No component is started (start() is never called): no port is opened, no channel is
 * opened, no file is written. Only what the components' configure() does happens: the stock
 * TAILDIR source creates the parent directory of its positionFile there; the file channel's
 * configure() touches nothing on disk (it creates its checkpoint and data directories in
 * start()), nor does the Kafka sink's (its producer, and so any connection, comes in start()).
 *
 * <p>Flume's own log goes to a buffer (it is the source of the reasons), not to the terminal;
 * {@code -v} also prints it on stderr.
 */
public final class CheckConfig {

  private static final String USAGE =
      "usage: java -cp 'lib/*' io.saltyard.flume.CheckConfig -n AGENT -f FILE [-v]";

  private CheckConfig() {
  }

  public static void main(String[] args) {
    // No static logger here: the log capture must be in place before any Flume class logs.
    String agent = null;
    String file = null;
    boolean verbose = false;
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if ((arg.equals("-n") || arg.equals("--name")) && i + 1 < args.length) {
        agent = args[++i];
      } else if ((arg.equals("-f") || arg.equals("--conf-file")) && i + 1 < args.length) {
        file = args[++i];
      } else if (arg.equals("-v") || arg.equals("--verbose")) {
        verbose = true;
      } else if (arg.equals("-h") || arg.equals("--help")) {
        System.out.println(USAGE);
        System.exit(0);
      } else {
        System.err.println("unknown argument: " + arg);
        System.err.println(USAGE);
        System.exit(2);
      }
    }
    if (agent == null || file == null) {
      System.err.println(USAGE);
      System.exit(2);
    }
    Capture capture = Capture.install(verbose);
    int code;
    try {
      code = new Checker(agent, new File(file), capture).run();
    } catch (Throwable t) {
      System.err.println("check failed: " + describe(t));
      code = 1;
    }
    System.out.flush();
    System.err.flush();
    // Components may have left non-daemon threads behind (none is started, but some create
    // executors on configure); the check is over either way.
    Runtime.getRuntime().halt(code);
  }

  /** The message of t and of each cause that adds something, joined by ": ". */
  static String describe(Throwable t) {
    StringBuilder out = new StringBuilder();
    Set<Throwable> seen = new java.util.HashSet<>();
    for (Throwable cur = t; cur != null && seen.add(cur); cur = cur.getCause()) {
      String msg = cur.getMessage();
      if (msg == null || msg.isEmpty()) {
        msg = cur.getClass().getSimpleName();
      }
      if (out.indexOf(msg) >= 0) {
        continue;
      }
      if (out.length() > 0) {
        out.append(": ");
      }
      out.append(msg);
    }
    return out.toString().replaceAll("\\s*\\R\\s*", " ");
  }

  /** The check itself: what the file declares against what Flume makes of it. */
  private static final class Checker {
    private final String agent;
    private final File file;
    private final Capture capture;
    /** "<kind> <name>" -> reason, in the order found; one line per component. */
    private final Map<String, String> problems = new LinkedHashMap<>();
    private final List<String> warnings = new ArrayList<>();
    private final Properties raw = new Properties();
    /** The name each of Flume's errors is about (its key), by problem id. */
    private final Map<String, String> errorKeys = new LinkedHashMap<>();
    /** The class of each declared source, channel and sink ("<kind> <name>"). */
    private final Map<String, Class<?>> classes = new LinkedHashMap<>();

    Checker(String agent, File file, Capture capture) {
      this.agent = agent;
      this.file = file;
      this.capture = capture;
    }

    int run() throws IOException {
      if (!file.isFile() || !file.canRead()) {
        System.err.println("file " + file + ": not a readable file");
        return 1;
      }
      // The same reader as Flume's (java.util.Properties), for the declared names only.
      try (InputStream in = new FileInputStream(file)) {
        raw.load(in);
      }
      String prefix = agent + ".";
      if (raw.stringPropertyNames().stream().noneMatch(k -> k.trim().startsWith(prefix))) {
        Set<String> agents = new TreeSet<>();
        for (String key : raw.stringPropertyNames()) {
          int dot = key.trim().indexOf('.');
          if (dot > 0) {
            agents.add(key.trim().substring(0, dot));
          }
        }
        problem("agent", agent, "not in " + file + " (agents there: "
            + (agents.isEmpty() ? "none" : String.join(", ", agents)) + ")");
        return report(null);
      }
      Set<String> sources = declared("sources");
      Set<String> channels = declared("channels");
      Set<String> sinks = declared("sinks");
      Set<String> groups = declared("sinkgroups");
      warnUnlisted("sources", sources);
      warnUnlisted("channels", channels);
      warnUnlisted("sinks", sinks);
      warnUnlisted("sinkgroups", groups);

      // Flume's loading, as the agent does it for -f FILE (no polling, no backup file).
      List<ConfigurationSource> configSources = new ArrayList<>();
      configSources.add(new FileConfigurationSource(file.getAbsoluteFile().toURI()));
      UriConfigurationProvider provider =
          new UriConfigurationProvider(agent, configSources, null, null, 0);
      FlumeConfiguration flumeConf = provider.getFlumeConfiguration();
      if (flumeConf == null) {
        problem("file", file.toString(), "Flume read no configuration from it");
        return report(null);
      }
      Map<String, String> flumeErrors = flumeErrors(flumeConf, sources, channels, sinks, groups);
      AgentConfiguration agentConf = flumeConf.getConfigurationFor(agent);
      if (agentConf == null) {
        problems.putAll(flumeErrors);
        problem("agent", agent, "Flume drops the whole agent"
            + (flumeErrors.isEmpty() ? " (an invalid configuration)" : " (the errors above)"));
        return report(null);
      }

      // Flume resolves these types outside its error handling: an unknown one stops the whole
      // agent from starting. Resolved here with Flume's factories, to name the component.
      checkTypes("source", sources, new DefaultSourceFactory(), null, null);
      checkTypes("channel", channels, null, new DefaultChannelFactory(), null);
      checkTypes("sink", sinks, null, null, new DefaultSinkFactory());

      MaterializedConfiguration materialized;
      try {
        materialized = provider.getConfiguration();
      } catch (RuntimeException | LinkageError e) {
        // Thrown out of a component's configure() (the HDFS sink without Hadoop's jars): named
        // by the component class in the stack.
        String culprit = blame(e);
        if (culprit != null) {
          problem(culprit.substring(0, culprit.indexOf(' ')), culprit.substring(
              culprit.indexOf(' ') + 1), (e instanceof LinkageError
                  ? "a class its type needs is not in lib/: " : "") + describe(e));
        }
        problem("agent", agent, "Flume would not start this agent at all: " + describe(e));
        return report(null);
      }

      Set<String> liveChannels = materialized.getChannels().keySet();
      Set<String> liveSources = materialized.getSourceRunners().keySet();
      Set<String> runners = materialized.getSinkRunners().keySet();
      Set<String> liveSinks = new TreeSet<>();
      for (String sink : sinks) {
        if (runners.contains(sink)) {
          liveSinks.add(sink);
        }
      }
      for (Map.Entry<String, ComponentConfiguration> e
          : agentConf.getSinkGroupConfigMap().entrySet()) {
        if (runners.contains(e.getKey())) {
          liveSinks.addAll(((SinkGroupConfiguration) e.getValue()).getSinks());
        }
      }
      missing("channel", channels, liveChannels, flumeErrors);
      missing("source", sources, liveSources, flumeErrors);
      missing("sink", sinks, liveSinks, flumeErrors);
      missing("sinkgroup", groups, runners, flumeErrors);
      // Errors Flume reported for components that it kept anyway still fail the check, with
      // what Flume logged about the name when it did (e.g. a sink group's unknown sink).
      for (Map.Entry<String, String> e : flumeErrors.entrySet()) {
        String key = errorKeys.get(e.getKey());
        String logged = key == null || key.isEmpty() ? null : capture.reasonFor(key);
        problems.putIfAbsent(e.getKey(), logged == null ? e.getValue()
            : e.getValue() + " (" + logged + ")");
      }
      liveSinks.retainAll(sinks);
      return report(String.format("OK: %d sources, %d channels, %d sinks",
          liveSources.size(), liveChannels.size(), liveSinks.size()));
    }

    private Set<String> declared(String list) {
      String value = rawValue(agent + "." + list);
      Set<String> names = new LinkedHashSet<>();
      if (value != null && !value.trim().isEmpty()) {
        names.addAll(Arrays.asList(value.trim().split("\\s+")));
      }
      return names;
    }

    private String rawValue(String key) {
      for (String k : raw.stringPropertyNames()) {
        if (k.trim().equals(key)) {
          return raw.getProperty(k);
        }
      }
      return null;
    }

    /** Components configured under the agent but missing from its list: Flume ignores them. */
    private void warnUnlisted(String list, Set<String> listed) {
      String prefix = agent + "." + list + ".";
      Set<String> configured = new TreeSet<>();
      for (String key : raw.stringPropertyNames()) {
        String k = key.trim();
        if (k.startsWith(prefix) && k.indexOf('.', prefix.length()) > 0) {
          configured.add(k.substring(prefix.length(), k.indexOf('.', prefix.length())));
        }
      }
      configured.removeAll(listed);
      for (String name : configured) {
        warnings.add(kindOf(list) + " " + name + ": configured but not listed in " + agent + "."
            + list + "; Flume ignores it");
      }
    }

    /** Flume's configuration errors for this agent, keyed like the problems. */
    private Map<String, String> flumeErrors(FlumeConfiguration conf, Set<String> sources,
        Set<String> channels, Set<String> sinks, Set<String> groups) {
      Map<String, String> out = new LinkedHashMap<>();
      for (FlumeConfigurationError error : conf.getConfigurationErrors()) {
        String component = error.getComponentName();
        String key = error.getKey();
        String what = error.getErrorType().getError();
        if (what == null) {
          what = error.getErrorType().toString();
        }
        String id;
        if (component.equals(agent)) {
          // An error inside the agent: key is a component name, a list name or "".
          if (sources.contains(key)) {
            id = "source " + key;
          } else if (channels.contains(key)) {
            id = "channel " + key;
          } else if (sinks.contains(key)) {
            id = "sink " + key;
          } else if (groups.contains(key)) {
            id = "sinkgroup " + key;
          } else if (key.isEmpty()) {
            id = "agent " + agent;
          } else {
            id = "agent " + agent + " '" + key + "'";
          }
        } else if (component.startsWith(agent + ".")) {
          id = "property " + component; // a line Flume ignored, e.g. an empty value
        } else {
          continue; // another agent's, or a line that belongs to no agent
        }
        errorKeys.put(id, component.equals(agent) ? key : "");
        if (error.getErrorOrWarning() == FlumeConfigurationError.ErrorOrWarning.WARNING) {
          warnings.add(id + ": " + what);
        } else {
          out.merge(id, what, (a, b) -> a.equals(b) ? a : a + "; " + b);
        }
      }
      return out;
    }

    /** The component whose class is deepest in the stack of t (null if none is). */
    private String blame(Throwable t) {
      for (Throwable cur = t; cur != null; cur = cur.getCause()) {
        for (StackTraceElement frame : cur.getStackTrace()) {
          for (Map.Entry<String, Class<?>> e : classes.entrySet()) {
            if (e.getValue().getName().equals(frame.getClassName())) {
              return e.getKey();
            }
          }
        }
        if (cur.getCause() == cur) {
          break;
        }
      }
      return null;
    }

    private void checkTypes(String kind, Set<String> names, SourceFactory sources,
        ChannelFactory channels, SinkFactory sinks) {
      for (String name : names) {
        String type = rawValue(agent + "." + kind + "s." + name + ".type");
        if (type == null || type.trim().isEmpty()) {
          continue; // FlumeConfiguration reports a missing type
        }
        type = type.trim();
        try {
          // An instance too (constructors only; configure() comes with Flume's loading): a class
          // can resolve and still miss the jars it needs.
          if (sources != null) {
            classes.put(kind + " " + name, sources.getClass(type));
            sources.create(name, type);
          } else if (channels != null) {
            classes.put(kind + " " + name, channels.getClass(type));
            channels.create(name, type);
          } else {
            classes.put(kind + " " + name, sinks.getClass(type));
            sinks.create(name, type);
          }
        } catch (LinkageError e) {
          problem(kind, name, "type '" + type + "' cannot be loaded, a class it needs is not in "
              + "lib/ (" + describe(e) + ")");
        } catch (RuntimeException e) {
          problem(kind, name, "unknown type '" + type + "' (" + describe(e) + ")");
        }
      }
    }

    private void missing(String kind, Set<String> declared, Set<String> live,
        Map<String, String> flumeErrors) {
      for (String name : declared) {
        if (live.contains(name) || problems.containsKey(kind + " " + name)) {
          continue;
        }
        String flume = flumeErrors.remove(kind + " " + name);
        String prefix = agent + "." + kind + "s." + name + ".";
        String reason;
        if (raw.stringPropertyNames().stream().noneMatch(k -> k.trim().startsWith(prefix))) {
          reason = "listed in " + agent + "." + kind + "s but the file has no " + prefix
              + "* properties";
        } else {
          reason = capture.reasonFor(name);
          if (reason == null) {
            reason = flume != null ? flume : "dropped by Flume (it logged no reason)";
          }
          if (kind.equals("source") || kind.equals("sink")) {
            reason += channelHint(kind, name);
          }
        }
        problem(kind, name, reason);
      }
    }

    /** Which of a source's or sink's channels do not exist or were dropped. */
    private String channelHint(String kind, String name) {
      String key = agent + "." + kind + "s." + name + (kind.equals("source") ? ".channels"
          : ".channel");
      String value = rawValue(key);
      if (value == null || value.trim().isEmpty()) {
        return " (no " + key.substring(key.lastIndexOf('.') + 1) + " set)";
      }
      Set<String> declaredChannels = declared("channels");
      List<String> notes = new ArrayList<>();
      for (String channel : value.trim().split("\\s+")) {
        if (!declaredChannels.contains(channel)) {
          notes.add("channel " + channel + " is not declared in " + agent + ".channels");
        } else if (problems.containsKey("channel " + channel)) {
          notes.add("channel " + channel + " was dropped");
        }
      }
      return notes.isEmpty() ? "" : " (" + String.join("; ", notes) + ")";
    }

    private static String kindOf(String list) {
      return list.substring(0, list.length() - 1);
    }

    private void problem(String kind, String name, String reason) {
      problems.putIfAbsent(kind + " " + name, reason);
    }

    private int report(String ok) {
      for (String warning : warnings) {
        System.err.println("warning: " + warning);
      }
      if (!problems.isEmpty() || ok == null) {
        for (Map.Entry<String, String> e : problems.entrySet()) {
          System.err.println(e.getKey() + ": " + e.getValue());
        }
        return 1;
      }
      System.out.println(ok);
      return 0;
    }
  }

  /** Flume's log during the check: kept in memory (the reasons come from it), not printed. */
  private static final class Capture extends AbstractAppender {
    private final List<LogEvent> events = new ArrayList<>();

    private Capture() {
      super("saltyard-checkconfig", null, null, true, Property.EMPTY_ARRAY);
    }

    static Capture install(boolean verbose) {
      Capture capture = new Capture();
      capture.start();
      LoggerContext context = (LoggerContext) LogManager.getContext(false);
      Configuration config = context.getConfiguration();
      config.addAppender(capture);
      for (LoggerConfig logger : config.getLoggers().values()) {
        if (!verbose) {
          for (String name : new ArrayList<>(logger.getAppenders().keySet())) {
            logger.removeAppender(name);
          }
        }
        logger.setLevel(verbose ? Level.INFO : Level.WARN);
      }
      LoggerConfig root = config.getRootLogger();
      root.addAppender(capture, Level.WARN, null);
      context.updateLoggers();
      return capture;
    }

    @Override
    public synchronized void append(LogEvent event) {
      events.add(event.toImmutable());
    }

    /**
     * Why Flume dropped the component called name: the error of the first logged exception that
     * names it (Flume logs "X has been removed" with the cause), else the first message naming it.
     */
    synchronized String reasonFor(String name) {
      Pattern word = Pattern.compile("(?<![\\w.-])" + Pattern.quote(name) + "(?![\\w-])");
      String message = null;
      for (LogEvent event : events) {
        String text = event.getMessage().getFormattedMessage();
        Throwable thrown = event.getThrown();
        boolean named = word.matcher(text).find()
            || (thrown != null && word.matcher(describe(thrown)).find());
        if (!named) {
          continue;
        }
        if (thrown != null) {
          return describe(thrown);
        }
        if (message == null) {
          message = text;
        }
      }
      return message;
    }
  }
}
