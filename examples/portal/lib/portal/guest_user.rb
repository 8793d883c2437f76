# frozen_string_literal: true

module Portal
  # The person a new desktop is for, as the library's `user` object: their login name (from the
  # account's name), their full name, and their browser's language, keyboard layout and time
  # zone, so the desktop greets its owner with their name, their keyboard and their clock.
  # Values the library would refuse are left out rather than failing the hand-out: a browser
  # sends what it likes, and a desktop in English beats no desktop.
  module GuestUser
    # Users and groups a guest's base system owns (the library's list, src/vm/user.rs).
    RESERVED = %w[root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody
                  systemd-network systemd-resolve systemd-timesync messagebus sshd lightdm polkitd avahi pulse rtkit
                  colord _apt usbmux dnsmasq saned geoclue uuidd tss systemd-coredump systemd-journal _rpc statd
                  tcpdump avahi-autoipd speech-dispatcher hplip kernoops cups-pk-helper nm-openvpn sddm gdm _chrony
                  ntp postfix _ssh adm tty disk kmem dialout fax voice cdrom floppy tape sudo audio dip operator src
                  shadow utmp video sasl plugdev staff users nogroup input sgx kvm render pulse-access autologin].freeze
    # A language's usual X keyboard layout where it is not the language's own code.
    LAYOUTS = { "en" => "us", "da" => "dk", "sv" => "se", "nb" => "no", "nn" => "no", "cs" => "cz",
                "el" => "gr", "ja" => "jp", "ko" => "kr", "uk" => "ua", "et" => "ee", "sl" => "si",
                "zh" => "cn", "fa" => "ir", "he" => "il", "ar" => "ara", "vi" => "vn", "ka" => "ge",
                "hi" => "in", "sr" => "rs", "be" => "by", "kk" => "kz" }.freeze
    # Regions whose layout is the region's, not the language's (en-GB types on gb, fr-CH on ch).
    REGIONS = %w[gb ch be ca br pt latam].freeze
    ZONE = %r{\A[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}\z}.freeze

    module_function

    # The user object for +account+ (a User), from the request's Accept-Language and the time
    # zone the page's script read from the browser (Intl), either may be nil.
    def for(account, accept_language: nil, timezone: nil)
      lang, region = language(accept_language)
      u = { login: login(account.username), full_name: account.username }
      if lang
        u[:locale] = "#{lang}_#{(region || default_region(lang)).upcase}.UTF-8"
        u[:keyboard] = keyboard(lang, region)
      end
      tz = timezone.to_s
      u[:timezone] = tz if tz.match?(ZONE) && tz.length <= 64 && !tz.include?("..")
      u
    end

    # A login the library takes: lowercase, letters/digits/_/-, a letter or _ first, 32 at most,
    # never a system account's.
    def login(username)
      l = username.to_s.downcase.gsub(/[^a-z0-9_-]/, "")
      l = "u#{l}" unless l.match?(/\A[a-z_]/)
      l = l[0, 32]
      RESERVED.include?(l) ? "#{l[0, 30]}-u" : l
    end

    # The first language of an Accept-Language header: ["de", "at"] of "de-AT,de;q=0.9", or nil.
    def language(header)
      first = header.to_s.split(",").map { |p| p.split(";").first.to_s.strip }.find { |t| !t.empty? && t != "*" }
      return nil unless first

      lang, region = first.downcase.split(/[-_]/, 3)
      return nil unless lang&.match?(/\A[a-z]{2,3}\z/)

      [lang, region&.match?(/\A[a-z]{2}\z/) ? region : nil]
    end

    def default_region(lang)
      { "en" => "us", "ja" => "jp", "ko" => "kr", "zh" => "cn", "sv" => "se", "da" => "dk", "cs" => "cz",
        "el" => "gr", "uk" => "ua", "he" => "il", "vi" => "vn", "nb" => "no" }.fetch(lang, lang)
    end

    def keyboard(lang, region)
      return region if region && REGIONS.include?(region)

      LAYOUTS.fetch(lang, lang)
    end
  end
end
