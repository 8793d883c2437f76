# frozen_string_literal: true

# No inline scripts anywhere; the console WebSocket goes to the console proxy's origin only.
# Inline styles are allowed because spice-html5 positions its video overlays with style attributes.
Rails.application.config.content_security_policy do |policy|
  policy.default_src :self
  policy.script_src :self
  policy.style_src :self, :unsafe_inline
  policy.img_src :self, :data, :blob
  policy.media_src :self, :blob
  policy.font_src :self
  # The proc runs in a controller, or with the request itself for mounted apps (/spice-html5).
  policy.connect_src :self, -> { Portal.console_ws_origin(is_a?(ActionDispatch::Request) ? self : request) }
  policy.object_src :none
  policy.base_uri :self
  policy.form_action :self
  policy.frame_ancestors :none
end
