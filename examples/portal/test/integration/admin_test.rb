# frozen_string_literal: true

require "test_helper"

class AdminTest < ActionDispatch::IntegrationTest
  setup do
    @admin = create_user("admin#{SecureRandom.hex(2)}", admin: true)
    @user = create_user
    # server-path imports may come from the test image's directory, wherever make-test-image
    # put it (not whatever PORTAL_IMPORT_DIRS or its default says)
    @saved_import_dirs = Portal.config.import_dirs
    Portal.config.import_dirs = [File.dirname(PortalTestHelpers.test_image_path)]
  end

  teardown { Portal.config.import_dirs = @saved_import_dirs }

  test "admin pages are not there for users who are not admins" do
    log_in(@user)
    [admin_root_path, admin_users_path, admin_vms_path, admin_images_path, admin_pools_path, new_admin_pool_path].each do |p|
      get p
      assert_response :not_found, p
    end
    submit(:post, admin_users_path, params: { user: { username: "sneaky", password: PASSWORD, admin: "1" } })
    assert_response :not_found
    assert_nil User.find_by(username: "sneaky")
  end

  test "every admin page renders for an admin" do
    log_in(@admin)
    [admin_root_path, admin_users_path, new_admin_user_path, admin_vms_path, admin_images_path, admin_pools_path,
     new_admin_pool_path].each do |p|
      get p
      assert_response :success, p
    end
    get admin_root_path
    assert_select "code", text: Portal.config.store_uri
  end

  test "an admin creates users, makes and unmakes admins, and deletes users with their desktops" do
    log_in(@admin)
    get admin_users_path
    assert_select "tr[data-user=?]", @user.username
    submit(:post, admin_users_path, params: { user: { username: "created", password: PASSWORD, admin: "0" } }, from: new_admin_user_path)
    assert_redirected_to admin_users_path
    created = User.find_by!(username: "created")
    refute created.admin?
    assert created.authenticate(PASSWORD)

    submit(:patch, admin_user_path(created), params: { user: { admin: "1" } }, from: admin_users_path)
    assert created.reload.admin?
    submit(:patch, admin_user_path(@admin), params: { user: { admin: "0" } }, from: admin_users_path)
    assert @admin.reload.admin?, "an admin removed their own admin rights"

    vm = make_vm(created)
    submit(:delete, admin_user_path(created), from: admin_users_path)
    assert_nil User.find_by(id: created.id)
    assert_raises(Vmpool::NotFound) { store.vm(vm[:uuid]) }
  end

  test "an admin sees every VM with its state and owner, and stops or deletes any" do
    vm = make_vm(@user, start: true)
    wait_for_serial(vm[:uuid], "VMPOOL-TEST-GUEST: ready")
    log_in(@admin)
    get admin_vms_path
    assert_select "tr[data-uuid=?] .state[data-state=running]", vm[:uuid]
    submit(:post, stop_admin_vm_path(vm[:uuid]), from: admin_vms_path)
    assert_redirected_to admin_vms_path
    assert_equal "stopped", store.vm(vm[:uuid])[:state]
    submit(:delete, admin_vm_path(vm[:uuid]), from: admin_vms_path)
    assert_raises(Vmpool::NotFound) { store.vm(vm[:uuid]) }
  ensure
    cleanup_vm(vm[:uuid]) if vm
  end

  test "an admin imports an image from a server path; the progress JSON follows the library's callback" do
    log_in(@admin)
    path = PortalTestHelpers.test_image_path
    submit(:post, admin_images_path, params: { image_import: { name: "from-path", version: "7", path: path } }, from: admin_images_path)
    imp = ImageImport.last
    assert_redirected_to admin_import_path(imp)
    follow_redirect!
    assert_select "progress#import-progress"
    deadline = Time.now + 60
    body = nil
    loop do
      get admin_import_path(imp, format: :json)
      body = JSON.parse(response.body)
      break if %w[done failed].include?(body["status"]) || Time.now > deadline

      sleep 0.1
    end
    assert_equal "done", body["status"], body["error"]
    assert_equal File.size(path), body["total_bytes"]
    assert_equal 1.0, body["fraction"]
    assert_operator body["progress_updates"], :>=, 1
    assert_equal "from-path", store.image(body["image_uuid"])[:name]
  ensure
    store.delete_image(body["image_uuid"]) if body&.dig("image_uuid")
  end

  test "an admin imports an uploaded image" do
    log_in(@admin)
    file = Rack::Test::UploadedFile.new(PortalTestHelpers.test_image_path, "application/octet-stream", true)
    submit(:post, admin_images_path, params: { image_import: { name: "uploaded", file: file } }, from: admin_images_path)
    imp = ImageImport.last
    assert_equal "upload", imp.source
    deadline = Time.now + 60
    sleep 0.1 until imp.reload.finished? || Time.now > deadline
    assert_equal "done", imp.status, imp.error
    assert_equal File.size(PortalTestHelpers.test_image_path), imp.total_bytes
    refute File.exist?(imp.path), "the kept upload was not removed"
  ensure
    store.delete_image(imp.image_uuid) if imp&.image_uuid
  end

  test "a refused upload does not stay in the uploads directory" do
    log_in(@admin)
    file = Rack::Test::UploadedFile.new(PortalTestHelpers.test_image_path, "application/octet-stream", true)
    submit(:post, admin_images_path, params: { image_import: { name: "bad name!", file: file } }, from: admin_images_path)
    assert_response :unprocessable_entity
    assert_empty Dir.glob(File.join(Portal.state_path("uploads"), "*")), "the refused upload was kept"
  end

  test "an admin deletes a pool's spare (a VM of no one): killed and deleted, not released" do
    name = "spare-#{SecureRandom.hex(3)}"
    store.create_pool(name: name, image: image, vcpus: 1, ram_mib: 256, disk_gib: 1, max_vms: 2, spares: 1,
                      warmth: "disk", on_release: "destroy")
    store.refill(name)
    spare = store.vms.find { |v| v[:pool] == name }
    assert spare, "no spare made"
    assert_empty spare[:owner].to_s
    store.start_vm(spare[:uuid]) # a running spare: it must be killed first
    log_in(@admin)
    submit(:delete, admin_vm_path(spare[:uuid]), from: admin_vms_path)
    assert_redirected_to admin_vms_path
    follow_redirect!
    assert_select ".flash.notice", /deleted/
    assert_raises(Vmpool::NotFound) { store.vm(spare[:uuid]) }
  ensure
    store.vms.select { |v| v[:pool] == name }.each { |v| cleanup_vm(v[:uuid]) }
    begin
      store.delete_pool(name)
    rescue Vmpool::Error
      nil
    end
  end

  test "server paths outside the import directories are refused" do
    log_in(@admin)
    submit(:post, admin_images_path, params: { image_import: { name: "shadow", path: "/etc/shadow" } }, from: admin_images_path)
    assert_response :unprocessable_entity
    assert_select "ul.errors", /must be a file under/
    assert_equal 0, ImageImport.where(name: "shadow").count
  end
end
