# frozen_string_literal: true

module ApplicationHelper
  def flavor(h)
    disk = h[:disk_gib] ? "#{h[:disk_gib]} GiB disk" : "image-size disk"
    "#{h[:vcpus]} vCPU · #{h[:ram_mib]} MiB RAM · #{disk}"
  end

  def image_label(images, uuid)
    i = images[uuid]
    i ? [i[:name], i[:version]].compact.join(" ") : uuid.to_s[0, 8]
  end

  def state_badge(state)
    tag.span(state, class: "state state-#{state}", data: { state: state })
  end

  # When the desktop's session ends (its pool's max_session_s), as Unix seconds; nil: no limit.
  def session_ends_unix(vm)
    Time.iso8601(vm[:session_ends_at].to_s).to_i if vm[:session_ends_at].present?
  rescue ArgumentError
    nil
  end

  # What the end of the session does with the desktop (its pool's on_logout), for the warning.
  def session_end_policy(vm)
    return nil unless vm[:pool]

    Portal.store.pool(vm[:pool])[:on_logout]
  rescue Vmpool::Error
    nil
  end

  # " since 14:02 (idle)" for a suspended VM.
  def asleep_since(vm)
    s = vm[:suspended]
    return "" unless s

    at = begin
      Time.iso8601(s[:at].to_s).localtime.strftime("%Y-%m-%d %H:%M")
    rescue ArgumentError
      s[:at]
    end
    " since #{at}#{" (#{s[:reason]})" if s[:reason].present?}"
  end

  def live?(vm)
    %w[running paused].include?(vm[:state])
  end

  def mib(bytes)
    "#{(bytes.to_f / (1 << 20)).round(1)} MiB"
  end
end
