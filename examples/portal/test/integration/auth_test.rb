# frozen_string_literal: true

require "test_helper"

class AuthTest < ActionDispatch::IntegrationTest
  test "pages need a login" do
    get root_path
    assert_redirected_to login_path
    get admin_root_path
    assert_redirected_to login_path
  end

  test "sign-up is off unless PORTAL_SIGNUP=1: no form, no link, and a forged post makes no user" do
    refute Portal.config.signup, "sign-up is open by default"
    get login_path
    assert_response :success
    assert_select "a[href=?]", signup_path, count: 0
    csrf = page_token
    get signup_path
    assert_response :not_found
    post signup_path, params: { user: { username: "intruder", password: PASSWORD, password_confirmation: PASSWORD },
                                authenticity_token: csrf }
    assert_response :not_found
    assert_nil User.find_by(username: "intruder")
    assert_nil session[:token], "a session was started"
  end

  test "sign up makes a bcrypt user and logs in" do
    Portal.config.signup = true
    get signup_path
    assert_response :success
    post signup_path, params: { user: { username: "newbie", password: PASSWORD, password_confirmation: PASSWORD },
                                authenticity_token: page_token }
    assert_redirected_to root_path
    u = User.find_by!(username: "newbie")
    assert u.authenticate(PASSWORD)
    refute u.admin?
    assert_equal 1, u.user_sessions.count
  end

  test "sign up refuses bad input and mismatched passwords" do
    Portal.config.signup = true
    get signup_path
    post signup_path, params: { user: { username: "x y", password: "short", password_confirmation: "short" }, authenticity_token: page_token }
    assert_response :unprocessable_entity
    post signup_path, params: { user: { username: "okname", password: PASSWORD, password_confirmation: "#{PASSWORD}!" }, authenticity_token: page_token }
    assert_response :unprocessable_entity
    assert_nil User.find_by(username: "okname")
  end

  test "sign up can be closed; admins still create users" do
    Portal.config.signup = true
    get signup_path
    assert_response :success
    Portal.config.signup = false
    get signup_path
    assert_response :not_found
    admin = create_user("boss#{SecureRandom.hex(2)}", admin: true)
    log_in(admin)
    submit(:post, admin_users_path, params: { user: { username: "made-by-admin", password: PASSWORD, admin: "0" } }, from: new_admin_user_path)
    assert_redirected_to admin_users_path
    assert User.find_by(username: "made-by-admin")
  end

  test "login with a wrong password fails; the right one starts a fresh session" do
    u = create_user
    get login_path
    post login_path, params: { username: u.username, password: "wrong password", authenticity_token: page_token }
    assert_response :unprocessable_entity
    assert_equal 0, u.user_sessions.count
    # What only reset_session changes (the encrypted cookie changes on every write anyway): the
    # session id and the CSRF secret kept in the session.
    old_id = session.id.to_s
    old_csrf = session[:_csrf_token]
    assert old_id.present? && old_csrf.present?
    post login_path, params: { username: u.username, password: PASSWORD, authenticity_token: page_token }
    assert_response :redirect
    follow_redirect!
    assert_response :success
    refute_equal old_id, session.id.to_s, "the session id must change at login (fixation)"
    refute_equal old_csrf, session[:_csrf_token], "the CSRF secret must change at login"
    assert_equal 1, u.user_sessions.count
  end

  test "CSRF: a form post without the token is refused" do
    u = create_user
    assert_raises(ActionController::InvalidAuthenticityToken) do
      post login_path, params: { username: u.username, password: PASSWORD }
    end
    log_in(u)
    assert_raises(ActionController::InvalidAuthenticityToken) { delete logout_path }
    assert_raises(ActionController::InvalidAuthenticityToken) do
      post login_path, params: { username: u.username, password: PASSWORD, authenticity_token: "forged" }
    end
  end

  test "CSRF: the page's JSON request for a console ticket is refused without the token" do
    u = create_user
    vm = make_vm(u, start: true)
    log_in(u)
    get desktop_path(vm[:uuid])
    csrf = page_token
    tokens = ConsoleToken.count
    assert_raises(ActionController::InvalidAuthenticityToken) do
      post console_desktop_path(vm[:uuid]), headers: { "Accept" => "application/json" }, as: :json
    end
    assert_raises(ActionController::InvalidAuthenticityToken) do
      post console_desktop_path(vm[:uuid]), headers: { "Accept" => "application/json", "X-CSRF-Token" => "forged" }
    end
    assert_equal tokens, ConsoleToken.count, "a console token was issued without the CSRF token"
    post console_desktop_path(vm[:uuid]), headers: { "Accept" => "application/json", "X-CSRF-Token" => csrf }
    assert_response :success
  ensure
    cleanup_vm(vm[:uuid]) if vm
  end

  test "logout ends the session on the server, so the old cookie is worthless" do
    u = create_user
    log_in(u)
    stolen = cookies["_vmpool_portal"]
    log_out
    assert_redirected_to login_path
    assert_equal 0, u.user_sessions.count
    cookies["_vmpool_portal"] = stolen
    get root_path
    assert_redirected_to login_path
  end

  test "sessions expire when idle" do
    u = create_user
    log_in(u)
    get root_path
    assert_response :success
    travel(Portal.config.session_idle + 10) do
      get root_path
      assert_redirected_to login_path
    end
  end
end
