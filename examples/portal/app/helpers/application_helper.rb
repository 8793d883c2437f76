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

  def live?(vm)
    %w[running paused].include?(vm[:state])
  end

  def mib(bytes)
    "#{(bytes.to_f / (1 << 20)).round(1)} MiB"
  end
end
