# Homebrew formula for telemetryd: builds from source with cargo, installs the shipped config
# into etc/telemetryd (data in var/telemetryd) and runs it as a `brew services` service.
# The release process fills in `url` and `sha256` for each tagged source archive.
class Telemetryd < Formula
  desc "Self-hosted client-telemetry appliance: ingest, store, search and metrics in one binary"
  homepage "https://github.com/telemetryd/telemetryd"
  url "https://github.com/telemetryd/telemetryd/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "Apache-2.0"
  head "https://github.com/telemetryd/telemetryd.git", branch: "main"

  depends_on "rust" => :build

  def install
    ENV["BUILD_GIT_COMMIT"] = "v#{version}" if build.stable?
    system "cargo", "install", *std_cargo_args

    inreplace "config/telemetry.toml", 'data_dir = "./data"', "data_dir = \"#{var}/telemetryd\""
    (etc/"telemetryd").install "config/telemetry.toml"

    generate_completions_from_executable(bin/"telemetryd", "completions")
    (man1/"telemetryd.1").write Utils.safe_popen_read(bin/"telemetryd", "man")
  end

  def post_install
    (var/"telemetryd").mkpath
    (var/"log").mkpath
  end

  service do
    run [opt_bin/"telemetryd", "--config", etc/"telemetryd/telemetry.toml"]
    keep_alive true
    working_dir var/"telemetryd"
    log_path var/"log/telemetryd.log"
    error_log_path var/"log/telemetryd.log"
  end

  test do
    assert_match "telemetryd #{version}", shell_output("#{bin}/telemetryd --version")
    output = shell_output("#{bin}/telemetryd check-config #{etc}/telemetryd/telemetry.toml")
    assert_match "is valid", output

    port = free_port
    (testpath/"telemetry.toml").write File.read(etc/"telemetryd/telemetry.toml")
      .sub('listen = "127.0.0.1:8080"', "listen = \"127.0.0.1:#{port}\"")
      .sub("data_dir = \"#{var}/telemetryd\"", "data_dir = \"#{testpath}/data\"")
    pid = spawn bin/"telemetryd", "--config", testpath/"telemetry.toml"
    begin
      sleep 3
      system bin/"telemetryd", "healthcheck", "--config", testpath/"telemetry.toml"
    ensure
      Process.kill("TERM", pid)
      Process.wait(pid)
    end
  end
end
